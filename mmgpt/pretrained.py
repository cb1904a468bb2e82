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
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model as st_load_model
from safetensors.torch import save_file
from safetensors.torch import save_model as st_save_model

from mmgpt.config import MMGPTConfig
from mmgpt.decoder import export_config
from mmgpt.errors import CheckpointError, ConfigError
from mmgpt.safe_io import atomic_dir, recover, verify_manifest, write_manifest
from mmgpt.tokenizer import load_tokenizer

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


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
    if not path.is_dir() and not recover(path):
        raise CheckpointError(f"checkpoint {path} not found (expected a directory with {CONFIG} and {WEIGHTS})")
    verify_manifest(path, check_hashes, required=(CONFIG, WEIGHTS))
    config = read_config(path)
    tokenizer = load_tokenizer(path)
    check_size(path, config, len(tokenizer))
    try:
        model = cls(config, tokenizer, load_weights=False)
    except (RuntimeError, ValueError, TypeError, ZeroDivisionError, KeyError) as e:
        raise CheckpointError(f"{path / CONFIG}: the model it describes cannot be built ({type(e).__name__}: {e})") \
            from None
    check_tensors(path / WEIGHTS, model)
    try:
        missing, unexpected = st_load_model(model, str(path / WEIGHTS), strict=False, device=str(map_location))
    except (SafetensorError, RuntimeError, OSError) as e:
        raise CheckpointError(f"{path / WEIGHTS}: cannot load weights: {e}") from e
    if missing or unexpected:
        raise CheckpointError(f"{path / WEIGHTS}: does not match the config (missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]})")
    return model.to(map_location)


def read_config(path: Path) -> MMGPTConfig:
    """A checkpoint's config, every value checked (:mod:`mmgpt.config`).

    Raises:
        CheckpointError: unreadable, or a key or value that is not allowed (named).
    """
    try:
        raw = json.loads((path / CONFIG).read_text())
        config = MMGPTConfig.from_dict(raw)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ConfigError) as e:
        raise CheckpointError(f"{path / CONFIG}: cannot read config: {e}") from None
    if "prefix_space" not in raw.get("tokenizer", {}):
        config.tokenizer.prefix_space = False  # saved before the option existed: trained without it
    return config


def estimated_parameters(config: MMGPTConfig, vocab: int) -> int:
    """Roughly the parameters ``config`` builds (decoder, encoders, adapters), from its sizes
    alone, to refuse a config that could not fit before anything is allocated."""
    dec = config.decoder
    hf = dec.hf_config or {}
    h = hf.get("hidden_size") or dec.hidden_size
    ffn = hf.get("intermediate_size") or dec.intermediate_size
    layers = hf.get("num_hidden_layers") or dec.num_layers
    n = layers * (4 * h * h + 3 * h * ffn) + 2 * max(vocab, hf.get("vocab_size") or 0) * h
    if (v := config.vision) is not None:
        d = v.embed_dim or 1024
        n += (v.depth or 48) * 12 * d * d + 4 * d * h
    if (a := config.audio) is not None:
        ahf = a.hf_config or {}
        d = ahf.get("d_model") or a.d_model
        n += (ahf.get("encoder_layers") or a.layers) * (4 * d * d + 2 * d * (ahf.get("encoder_ffn_dim") or a.ffn_dim))
        n += (ahf.get("max_source_positions") or a.max_source_positions) * d + 4 * d * h
    return n


def check_size(path: Path, config: MMGPTConfig, vocab: int) -> None:
    """Refuse a config whose fp32 weights would not fit in this machine's memory.

    Raises:
        CheckpointError: the estimate exceeds the physical memory.
    """
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX
        return
    need = 4 * estimated_parameters(config, vocab)
    if need > memory:
        raise CheckpointError(f"{path / CONFIG}: describes a model of about {need / 2**30:,.1f} GiB in fp32, more "
                              f"than this machine's {memory / 2**30:,.1f} GiB of memory; not built")


def check_tensors(weights: Path, model: torch.nn.Module) -> None:
    """Every tensor of the weights file has the dtype and shape of the model's own: nothing is
    cast or broadcast silently.

    Raises:
        CheckpointError: naming the first tensor that differs.
    """
    own = model.state_dict()
    try:
        with safe_open(str(weights), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                if name not in own:
                    continue  # reported as unexpected by the load
                piece = f.get_slice(name)
                dtype, shape = _DTYPES.get(piece.get_dtype()), tuple(piece.get_shape())
                if dtype != own[name].dtype or shape != tuple(own[name].shape):
                    raise CheckpointError(f"{weights}: {name} is {piece.get_dtype()} {list(shape)}, the model's is "
                                          f"{own[name].dtype} {list(own[name].shape)}")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{weights}: cannot read weights: {e}") from e
