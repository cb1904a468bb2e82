"""``mmgpt convert-weights IN OUT``: a pickled weight file you trust, once, to safetensors.

mmgpt loads weights from safetensors only (a checkpoint, ``vision.pretrained_path``, Whisper
folders, decoders), because unpickling a file runs whatever its author put in it. A timm or
PyTorch ``.pth`` / ``.bin`` / ``.pt`` you downloaded from a source you trust is converted here,
with ``torch.load(weights_only=True)`` (tensors and plain containers only), and then loaded as
``.safetensors`` like any other.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmgpt.errors import CheckpointError


def flatten(obj, prefix: str = "") -> dict:
    """Tensors of a nested state dict (``{"model": {...}}`` / ``{"state_dict": {...}}``) by dotted name."""
    import torch

    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    if isinstance(obj, dict):
        if not prefix and len(obj) == 1 and next(iter(obj)) in ("model", "state_dict", "module"):
            return flatten(next(iter(obj.values())))
        out = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {}


def convert(src: Path, dst: Path) -> int:
    """Write ``src``'s tensors to ``dst`` (safetensors, atomically); returns the tensor count.

    Raises:
        CheckpointError: ``src`` is missing, not loadable with ``weights_only=True``, or holds no tensor.
    """
    import torch
    from safetensors.torch import save_file

    from mmgpt.safe_io import atomic_path

    if not src.is_file():
        raise CheckpointError(f"{src}: no such file")
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError...
        raise CheckpointError(f"{src}: not a plain weight file (torch.load weights_only=True: {e})") from None
    tensors = {k: v.contiguous() for k, v in flatten(obj).items()}
    if not tensors:
        raise CheckpointError(f"{src}: holds no tensors")
    with atomic_path(dst) as tmp:
        save_file(tensors, str(tmp))
    return len(tensors)


def add_cli(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[1]
    parser.add_argument("src", type=Path, help="a .pth / .bin / .pt weight file from a source you trust")
    parser.add_argument("dst", type=Path, help="the .safetensors file to write")

    def run(args: argparse.Namespace) -> int:
        n = convert(args.src, args.dst)
        print(f"wrote {args.dst} ({n} tensors)")
        return 0

    parser.set_defaults(run=run)
