"""Frozen-feature cache: an encoder's output for each media source, computed once and reused.

When an encoder is frozen (and mmgpt applies no augmentation), its output for a given image or
clip never changes, so it is computed once and kept in memory and on disk (safetensors
shards) for later epochs and later stages. It sits in the data path, before decoding:

    processor: source -> key (:func:`source_key`) -> hit: the cached features, nothing decoded
                                                   -> miss: decode + prepare, as without a cache
    batch: the items of a cached modality stay a list (``batch["cached_media"]``)
    objective: :meth:`FeatureCache.features_for` encodes the misses of the batch in one call,
               keeps them, and hands the model every item's features (``batch["features"]``)

Keys are read without decoding: a file is its resolved path, size and modification time (so an
edited file is a new key); bytes, arrays and images in memory are hashed. The folder is named
by a fingerprint of the encoder's config, weights and compute dtype: change the encoder and a
new, empty cache is used.

Shapes: I items; each has (N_i, D) features (images: N fixed; clips: T_i frames).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from mmgpt.batching import MediaItem, pad_stack

log = logging.getLogger(__name__)
Encode = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def encoder_fingerprint(encoder: nn.Module, extra: str = "") -> str:
    """A short hash of the encoder's config, weights and the compute dtype (``extra``)."""
    h = hashlib.sha1()
    h.update(json.dumps(repr(getattr(encoder, "cfg", type(encoder).__name__)), sort_keys=True).encode())
    h.update(extra.encode())
    for name, t in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _array_bytes(a: np.ndarray) -> bytes:
    a = np.ascontiguousarray(a)
    return f"{a.dtype}{a.shape}".encode() + a.tobytes()


def source_key(source: Any) -> str | None:
    """The identity of a media source, read without decoding it; None when it has none (the item
    is then decoded every time).

    A path: resolved path, size and modification time (a missing file has no key; decoding
    reports it). Bytes, numpy arrays, tensors, PIL images and ``(waveform, rate)`` pairs: a hash
    of their content.
    """
    h = hashlib.sha1()
    if isinstance(source, str | os.PathLike):
        try:
            path = Path(source).resolve()
            st = path.stat()
        except OSError:
            return None
        h.update(f"file\0{path}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    elif isinstance(source, bytes | bytearray):
        h.update(b"bytes\0" + bytes(source))
    elif isinstance(source, np.ndarray):
        h.update(b"array\0" + _array_bytes(source))
    elif isinstance(source, torch.Tensor):
        h.update(b"tensor\0" + _array_bytes(source.detach().cpu().float().numpy()))
    elif isinstance(source, Image.Image):
        h.update(f"image\0{source.mode}\0{source.size}\0".encode() + source.tobytes())
    elif isinstance(source, tuple) and len(source) == 2 and isinstance(source[1], int):
        wave = source[0].detach().cpu().numpy() if isinstance(source[0], torch.Tensor) else np.asarray(source[0])
        h.update(f"wave\0{source[1]}\0".encode() + _array_bytes(wave))
    else:
        return None
    return h.hexdigest()


class FeatureCache:
    """Cache of one frozen encoder's features, in memory and under ``root/<modality>-<fingerprint>/``.

    Args:
        root: folder for the on-disk shards (None: memory only).
        fingerprint: :func:`encoder_fingerprint` of the encoder.
        modality: the encoder's modality (names the folder).
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

    @staticmethod
    def key(source: Any) -> str | None:
        """:func:`source_key` of ``source``."""
        return source_key(source)

    def lookup(self, key: str) -> torch.Tensor | None:
        """The cached (N, D) features under ``key``, or None."""
        return self.mem.get(key)

    def features_for(self, items: list[MediaItem], encode: Encode,
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Every item's features, encoding the items without them in one call and keeping those.

        Args:
            items: a batch's items of this modality, in order (hits carry ``features``).
            encode: ``(values, lengths) -> (features (I, N, D), lengths (I,))``, the frozen encoder
                (the caller sets no-grad and autocast).
            device: where the missing items are encoded and the result lives.

        Returns:
            (I, N_max, D) features, zero-padded, and (I,) lengths.
        """
        feats = [it.features if it.features is not None or it.key is None else self.mem.get(it.key) for it in items]
        missing = [i for i, f in enumerate(feats) if f is None]  # not cached when processed, nor since
        if missing:
            values, lengths = pad_stack([items[i].values for i in missing])
            out, out_len = encode(values.to(device), lengths.to(device))
            for j, i in enumerate(missing):
                f = out[j, : int(out_len[j])].detach().to("cpu").contiguous()  # (N_i, D)
                feats[i] = f
                if items[i].key is not None:
                    self.mem[items[i].key] = f
                    self.pending[items[i].key] = f
        self.misses += len(missing)
        self.hits += len(items) - len(missing)
        out, lengths = pad_stack(feats, dim=0)  # (I, N_max, D)
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
