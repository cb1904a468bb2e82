"""Checkpoints: safetensors weights + JSON, written atomically, verified on load.

A model directory holds ``config.json`` (the :class:`~mmgpt.config.MMGPTConfig`, with the
decoder's and audio encoder's full transformers configs inlined so it reloads without the
original files), ``model.safetensors``, the tokenizer files, and ``manifest.json`` (size and
SHA-256 of every file). Nothing is ever unpickled.

Writes go to a temporary sibling directory; every file and the directory are fsynced, then
the directory is renamed into place, so a crash leaves either the old or the new checkpoint,
never half of one.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model as st_load_model
from safetensors.torch import save_file
from safetensors.torch import save_model as st_save_model

from mmgpt.config import MMGPTConfig
from mmgpt.decoder import export_config
from mmgpt.errors import CheckpointError, ConfigError
from mmgpt.tokenizer import load_tokenizer

MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def fsync_tree(path: Path) -> None:
    """fsync every file under ``path`` and the directories themselves."""
    for root, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
        os.replace(tmp, target)
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a small file atomically (temp file, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(directory: Path) -> None:
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)
    entries = {str(p.relative_to(directory)): {"size": p.stat().st_size, "sha256": sha256(p)} for p in files}
    (directory / MANIFEST).write_text(json.dumps({"format": "mmgpt", "version": 1, "files": entries}, indent=1))


def verify_manifest(directory: Path, check_hashes: bool = True) -> None:
    """Check that every file the manifest lists exists with its size (and hash).

    Raises:
        CheckpointError: a file is missing, truncated or changed.
    """
    path = directory / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{directory}: {MANIFEST} missing; not an mmgpt checkpoint")
    try:
        files = json.loads(path.read_text())["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: damaged manifest ({e})") from None
    for name, info in files.items():
        p = directory / name
        if not p.is_file():
            raise CheckpointError(f"{directory}: {name} is missing")
        if p.stat().st_size != info["size"]:
            raise CheckpointError(f"{p}: size {p.stat().st_size} bytes, expected {info['size']} (truncated?)")
        if check_hashes and sha256(p) != info["sha256"]:
            raise CheckpointError(f"{p}: contents changed since it was written (SHA-256 mismatch)")


def portable_config(model) -> MMGPTConfig:
    """The model's config with pretrained paths replaced by the full configs they resolved to."""
    cfg = copy.deepcopy(model.config)
    cfg.decoder.hf_config = export_config(model.decoder)
    cfg.decoder.pretrained_path = None
    if cfg.audio is not None:
        cfg.audio.hf_config = model.encoders["audio"].export_config()
        cfg.audio.pretrained_path = None
    if cfg.vision is not None:
        cfg.vision.pretrained_path = None
    cfg.tokenizer.path = None
    return cfg


def distinct_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, each with its own storage (tied weights are written once per
    name; loading ties them again), as ``safetensors.save_file`` requires."""
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        v = v.detach().cpu().contiguous()
        ptr = v.untyped_storage().data_ptr()
        if ptr in seen:
            v = v.clone()
        seen.add(v.untyped_storage().data_ptr())
        out[k] = v
    return out


def save_model(model, path: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a model directory atomically; see the module docstring for its contents.

    ``state_dict`` replaces the model's own tensors (the full weights gathered from FSDP2 shards).
    """
    path = Path(path)
    decoder = model.decoder
    if hasattr(decoder, "peft_config"):
        raise CheckpointError("merge LoRA adapters before saving (mmgpt.train.lora.merge_lora)")
    with atomic_dir(path) as tmp:
        (tmp / CONFIG).write_text(portable_config(model).to_json())
        meta = {"format": "pt", "producer": "mmgpt"}
        if state_dict is None:
            st_save_model(model, str(tmp / WEIGHTS), metadata=meta)
        else:
            save_file(distinct_tensors(state_dict), str(tmp / WEIGHTS), metadata=meta)
        model.tokenizer.save_pretrained(str(tmp))
        write_manifest(tmp)
    return path


def load_model(cls, path: str | Path, map_location: str | torch.device = "cpu", check_hashes: bool = True):
    """Restore a model directory written by :func:`save_model`.

    Raises:
        CheckpointError: the directory or a file is missing, truncated, changed, or does not
            fit the config.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} not found (expected a directory with {CONFIG} and {WEIGHTS})")
    verify_manifest(path, check_hashes)
    try:
        raw = json.loads((path / CONFIG).read_text())
        config = MMGPTConfig.from_dict(raw)
    except (OSError, json.JSONDecodeError, ConfigError) as e:
        raise CheckpointError(f"{path / CONFIG}: cannot read config: {e}") from e
    if "prefix_space" not in raw.get("tokenizer", {}):
        config.tokenizer.prefix_space = False  # saved before the option existed: trained without it
    tokenizer = load_tokenizer(path)
    model = cls(config, tokenizer, load_weights=False)
    try:
        missing, unexpected = st_load_model(model, str(path / WEIGHTS), strict=False, device=str(map_location))
    except (SafetensorError, RuntimeError, OSError) as e:
        raise CheckpointError(f"{path / WEIGHTS}: cannot load weights: {e}") from e
    if missing or unexpected:
        raise CheckpointError(f"{path / WEIGHTS}: does not match the config (missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]})")
    return model.to(map_location)
