"""The model directory (``save_pretrained`` / ``from_pretrained``): safetensors weights + JSON.

A model directory holds ``config.json`` (the :class:`~mmgpt.config.MMGPTConfig`, with the
decoder's and audio encoder's full transformers configs inlined so it reloads without the
original files), ``model.safetensors``, the tokenizer files, and ``manifest.json`` (size and
SHA-256 of every file). Nothing is ever unpickled.

The directory is written atomically and its manifest verified on load (:mod:`mmgpt.safe_io`).
Training checkpoints for exact resume (optimiser, RNG, schedule) are :mod:`mmgpt.train.resume`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model as st_load_model
from safetensors.torch import save_file
from safetensors.torch import save_model as st_save_model

from mmgpt.config import MMGPTConfig
from mmgpt.decoder import export_config
from mmgpt.errors import CheckpointError, ConfigError
from mmgpt.safe_io import atomic_dir, verify_manifest, write_manifest
from mmgpt.tokenizer import load_tokenizer

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def portable_config(model) -> MMGPTConfig:
    """The model's config with pretrained paths replaced by the full configs they resolved to."""
    cfg = copy.deepcopy(model.config)
    cfg.decoder.hf_config = export_config(model.decoder)
    cfg.decoder.pretrained_path = None
    for modality, encoder in model.encoders.items():
        encoder.make_portable(cfg.encoder_config(modality))
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
