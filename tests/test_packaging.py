"""Packaging: every package folder is listed in pyproject, and nothing installs as bare `datasets`."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DATA = ("presets", "recipes", "plans")


def _import_name(folder: Path) -> str:
    rel = folder.relative_to(ROOT).parts
    top = {"mmgpt": "mmgpt", "encoders": "mmgpt.encoders", "datasets": "mmgpt.datasets"}[rel[0]]
    return ".".join([top, *rel[1:]])


def test_every_package_folder_is_listed():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = {
        _import_name(p.parent)
        for top in ("mmgpt", "encoders", "datasets")
        for p in (ROOT / top).rglob("__init__.py")
    } | {_import_name(ROOT / "mmgpt" / d) for d in DATA}  # YAML folders shipped as package data
    assert found == listed, f"missing from pyproject: {found - listed}; stale: {listed - found}"
    assert cfg["package-dir"] == {"mmgpt": "mmgpt", "mmgpt.encoders": "encoders", "mmgpt.datasets": "datasets"}


def test_no_bare_datasets_or_encoders_import(tmp_path):
    import subprocess
    import sys

    code = (
        "import importlib.util, mmgpt.datasets, mmgpt.encoders\n"
        "print(mmgpt.datasets.__file__)\n"
        "print(importlib.util.find_spec('encoders'))\n"
        "s = importlib.util.find_spec('datasets')\n"
        "print(s.origin if s else None)\n"
    )
    # Run from elsewhere: the repository folder itself must not be what makes imports work.
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    ours, enc, hf = out.stdout.split("\n")[:3]
    assert ours.endswith("datasets/__init__.py")
    assert enc == "None"
    # Hugging Face's `datasets` may be installed; ours must never be what `import datasets` finds.
    assert hf == "None" or (hf != str(ROOT / "datasets" / "__init__.py") and "site-packages" in hf)
