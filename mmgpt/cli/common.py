"""What the subcommands share: the default model directory and loading a model with a useful hint."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmgpt.errors import CheckpointError

DEFAULT_CHECKPOINT = "runs/quickstart/final"


def checkpoint_arg(p: argparse.ArgumentParser, optional: bool = False) -> None:
    """Add the positional model-directory argument (optional: defaults to the quickstart's model)."""
    if optional:
        p.add_argument("checkpoint", nargs="?", default=DEFAULT_CHECKPOINT,
                       help=f"model directory (default {DEFAULT_CHECKPOINT}, made by `make quickstart`)")
    else:
        p.add_argument("checkpoint", help="model directory written by training or save_pretrained")


def load_checkpoint(path: str):
    """Load a model for a command in eval mode, saying how to make one if it is missing.

    Raises:
        CheckpointError: no model at ``path``, or a damaged one.
    """
    from mmgpt.model import load

    if not Path(path).exists():
        hint = " Run `make quickstart` (or `mmgpt quickstart`) to train it." if path == DEFAULT_CHECKPOINT else ""
        raise CheckpointError(f"no model at {path}.{hint}")
    return load(path).eval()
