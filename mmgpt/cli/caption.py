"""``mmgpt caption MODEL --image ... --audio ...``: one line per file."""

from __future__ import annotations

import argparse
import sys

from mmgpt.cli.common import checkpoint_arg, load_checkpoint
from mmgpt.errors import MMGPTError


def add_cli(p: argparse.ArgumentParser) -> None:
    """Arguments of ``mmgpt caption``."""
    p.description = "Caption images and audio clips with a trained model; prints one line per file."
    checkpoint_arg(p)
    p.add_argument("--image", nargs="+", default=[], metavar="PATH", help="image files")
    p.add_argument("--audio", nargs="+", default=[], metavar="PATH", help="audio files (any rate; mixed to mono)")
    p.add_argument("--prompt", default=None, help="instruction (default 'Describe the image.' / 'Describe the sound.')")
    p.add_argument("--max-new-tokens", type=int, default=64)

    def run(a: argparse.Namespace) -> int:
        if not a.image and not a.audio:
            p.error("give --image and/or --audio files")
        model = load_checkpoint(a.checkpoint)
        status = 0
        for kind, paths in (("image", a.image), ("audio", a.audio)):
            for path in paths:
                try:
                    text = model.caption(**{kind: path}, prompt=a.prompt, max_new_tokens=a.max_new_tokens)
                    print(f"{path}\t{' '.join(text.split())}")  # one line per file, always
                except MMGPTError as e:  # one bad file does not stop the others
                    print(f"{path}\tERROR: {e}", file=sys.stderr)
                    status = 1
        return status

    p.set_defaults(run=run)
