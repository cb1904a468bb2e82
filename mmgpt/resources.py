"""The YAML files that ship inside the package, found by name from any working folder.

=============  ============================  ============================================
kind           folder (package data)         named in
=============  ============================  ============================================
``preset``     ``mmgpt/presets/*.yaml``      ``model: quickstart``, ``MMGPT.from_config("tiny")``
``recipe``     ``mmgpt/recipes/*.yaml``      ``mmgpt train stage1_align``, ``base: stage3_instruct``
``plan``       ``mmgpt/plans/*.yaml``        ``mmgpt quickstart --plan quickstart``
=============  ============================  ============================================

A value that names an existing file is that file (a relative path is relative to the working
folder, as a user typing it expects); otherwise a bare name is the shipped file of that name.
Nothing here depends on where the package is installed or on the working folder.
"""

from __future__ import annotations

from pathlib import Path

from mmgpt.errors import ConfigError

PACKAGE = Path(__file__).resolve().parent
FOLDERS = {"preset": PACKAGE / "presets", "recipe": PACKAGE / "recipes", "plan": PACKAGE / "plans"}


def shipped(kind: str) -> list[str]:
    """Names of the shipped files of ``kind`` (``preset``, ``recipe`` or ``plan``)."""
    return sorted(p.stem for p in FOLDERS[kind].glob("*.yaml"))


def resolve(kind: str, value: str | Path) -> Path:
    """The file ``value`` names: an existing path, or the shipped ``kind`` of that name.

    Raises:
        ConfigError: neither exists (the message lists the shipped names).
    """
    path = Path(value).expanduser()
    if path.is_file():
        return path
    named = FOLDERS[kind] / f"{value}.yaml"
    if path.suffix not in (".yaml", ".yml") and len(path.parts) == 1 and named.is_file():
        return named
    raise ConfigError(f"{kind} {str(value)!r} not found: not a file, and not a shipped {kind} "
                      f"({', '.join(shipped(kind))})")


def preset(value: str | Path) -> Path:
    """A model preset: a YAML path or a shipped name (``tiny``, ``quickstart``, ``small``)."""
    return resolve("preset", value)


def recipe(value: str | Path) -> Path:
    """A training recipe: a YAML path or a shipped name (``stage1_align``)."""
    return resolve("recipe", value)


def plan(value: str | Path) -> Path:
    """A pipeline plan: a YAML path or a shipped name (``quickstart``)."""
    return resolve("plan", value)
