"""Frozen-feature cache: encoder outputs computed once per media item and reused.

When an encoder is frozen (and mmgpt applies no augmentation), its output for a given image
or clip never changes, so it is computed once, keyed by a hash of the decoded media, and kept
in memory and on disk (safetensors shards) for later epochs and later stages. The cache
folder is named by a fingerprint of the encoder's weights and config: change the encoder and
a new, empty cache is used.

Shapes: I items; images give (P, D) each, clips (T_i, D) each.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

log = logging.getLogger(__name__)


def encoder_fingerprint(encoder: nn.Module, extra: str = "") -> str:
    """A short hash of the encoder's config, weights and the compute dtype (``extra``)."""
    h = hashlib.sha1()
    h.update(json.dumps(repr(getattr(encoder, "cfg", type(encoder).__name__)), sort_keys=True).encode())
    h.update(extra.encode())
    for name, t in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def media_key(t: torch.Tensor) -> str:
    """Hash of a decoded media tensor (pixel values or waveform)."""
    return hashlib.sha1(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


class FeatureCache:
    """Cache of one frozen encoder's features, in memory and under ``root/<fingerprint>/``.

    Args:
        root: folder for the on-disk shards (None: memory only).
        fingerprint: :func:`encoder_fingerprint` of the encoder.
        modality: ``"image"`` or ``"audio"`` (used in names only).
        skip: shard names (without extension) to ignore, e.g. shards a resumed run wrote after
            the checkpoint it resumes from.
    """

    def __init__(self, root: str | Path | None, fingerprint: str, modality: str,
                 skip: Callable[[str], bool] | None = None) -> None:
        self.modality = modality
        self.dir = Path(root) / f"{modality}-{fingerprint}" if root is not None else None
        self.mem: dict[str, torch.Tensor] = {}
        self.pending: dict[str, torch.Tensor] = {}
        self.hits = self.misses = 0
        if self.dir is not None and self.dir.is_dir():
            for shard in sorted(self.dir.glob("*.safetensors")):
                if skip is not None and skip(shard.stem):
                    continue
                try:
                    self.mem.update(load_file(str(shard)))
                except Exception as e:  # a damaged shard costs recomputation, nothing else
                    log.warning("ignoring damaged feature-cache shard %s: %s", shard, e)
            if self.mem:
                log.info("feature cache %s: %d %s items from %s", fingerprint, len(self.mem), modality, self.dir)

    def __len__(self) -> int:
        return len(self.mem)

    def features(self, items: list[torch.Tensor], compute: Callable[[list[int]], list[torch.Tensor]],
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of every item, computing only the missing ones.

        Args:
            items: decoded media tensors (pixel values (3, H, W) or waveforms (S,)).
            compute: given indices of missing items, returns their features, each (L_i, D).
            device: where the returned batch lives.

        Returns:
            (I, L_max, D) features, zero-padded, and (I,) lengths.
        """
        keys = [media_key(t) for t in items]
        missing = [i for i, k in enumerate(keys) if k not in self.mem]
        if missing:
            fresh = compute(missing)
            for i, f in zip(missing, fresh):
                f = f.detach().to("cpu").contiguous()
                self.mem[keys[i]] = f
                self.pending[keys[i]] = f
        self.misses += len(missing)
        self.hits += len(items) - len(missing)
        feats = [self.mem[k] for k in keys]
        lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
        out = feats[0].new_zeros(len(feats), int(lengths.max()), feats[0].shape[-1])  # (I, L, D)
        for i, f in enumerate(feats):
            out[i, : f.shape[0]] = f
        return out.to(device), lengths.to(device)

    def flush(self, tag: str | None = None) -> None:
        """Write features computed since the last flush as a new shard (atomic rename).

        ``tag`` names the shard (the trainer uses ``<run>-step<N>``), so a resumed run can
        ignore shards written after its checkpoint and see exactly the cache it had then.
        """
        if self.dir is None or not self.pending:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"{tag or uuid.uuid4().hex[:12]}.safetensors"
        tmp = self.dir / f".{name}.tmp"
        save_file(self.pending, str(tmp))
        os.replace(tmp, self.dir / name)
        self.pending = {}
