"""Training checkpoints for exact resume: weights, optimiser, schedule, RNG, data position.

Layout of ``runs/<name>/checkpoints/``::

    step-00000200/  model.safetensors  optimizer.safetensors  rng.safetensors
                    trainer_state.json  manifest.json
    latest          (text: the name of the newest complete checkpoint)

Each checkpoint directory is written to a temporary name, fsynced and renamed, and only then
does ``latest`` move (also atomically), so a run killed at any instant resumes from the last
complete checkpoint. Only the newest ``keep_last`` are kept. Tensors go to safetensors and
everything else to JSON; nothing is unpickled.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors.torch import load_model as st_load_model
from safetensors.torch import save_model as st_save_model

from mmgpt.errors import CheckpointError
from mmgpt.pretrained import distinct_tensors
from mmgpt.safe_io import atomic_dir, atomic_write_text, verify_manifest, write_manifest

log = logging.getLogger(__name__)
LATEST = "latest"


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, meta = {}, {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{key}"] = value.detach().contiguous().cpu()
            else:
                meta[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": meta}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], info: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in list(tensors.items()) + list(info["scalars"].items()):
        idx, key = name.rsplit(".", 1)  # idx: a parameter index, or its name (FSDP2 full state)
        state.setdefault(int(idx) if idx.isdigit() else idx, {})[key] = value
    return {"state": state, "param_groups": info["param_groups"]}


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    version, internal, gauss = random.getstate()
    return tensors, {"python": [version, list(internal), gauss]}


def set_rng_state(tensors: dict[str, torch.Tensor], info: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = info["python"]
    random.setstate((version, tuple(internal), gauss))


def save_training_checkpoint(root: Path, step: int, model: torch.nn.Module, optimizer, scheduler,
                             state: dict[str, Any], keep_last: int, gathered: tuple[dict, dict] | None = None) -> Path:
    """Write ``root/step-XXXXXXXX`` atomically, point ``latest`` at it, prune old ones.

    ``gathered``: (model, optimiser) full state dicts gathered from FSDP2 shards, written
    instead of ``model`` and ``optimizer``'s own.
    """
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    with atomic_dir(root / name) as tmp:
        if gathered is None:
            st_save_model(model, str(tmp / "model.safetensors"))
        else:
            save_file(distinct_tensors(gathered[0]), str(tmp / "model.safetensors"))
        opt_tensors, opt_info = _flatten_optimizer(optimizer.state_dict() if gathered is None else gathered[1])
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        rng_tensors, rng_info = rng_state()
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        payload = {"step": step, "scheduler": scheduler.state_dict(), "optimizer": opt_info, "rng": rng_info, **state}
        (tmp / "trainer_state.json").write_text(json.dumps(payload, indent=1))
        write_manifest(tmp)
    atomic_write_text(root / LATEST, name)
    done = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in done[: max(0, len(done) - keep_last)]:
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return root / name


def checkpoint_step(path: Path) -> int:
    """The step a checkpoint directory (``step-00000200``) was written at."""
    return int(path.name.split("-", 1)[1])


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root``, or None."""
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    return path if path.is_dir() else None


def load_training_checkpoint(path: Path, model: torch.nn.Module, optimizer, scheduler,
                             sharded: bool = False) -> dict[str, Any]:
    """Restore model, optimiser, scheduler and RNG from ``path``; returns the trainer state.

    ``sharded``: the model is FSDP2-sharded; every process reads the full state and keeps its
    shards (call on every process).

    Raises:
        CheckpointError: a file is missing or damaged, or does not fit the model / optimiser.
    """
    verify_manifest(path)
    try:
        state = json.loads((path / "trainer_state.json").read_text())
        opt = _unflatten_optimizer(load_file(str(path / "optimizer.safetensors")), state["optimizer"])
        if sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

            set_state_dict(model, optimizer, model_state_dict=load_file(str(path / "model.safetensors")),
                           optim_state_dict=opt, options=StateDictOptions(full_state_dict=True))
        else:
            missing, unexpected = st_load_model(model, str(path / "model.safetensors"), strict=False)
            if missing or unexpected:
                raise CheckpointError(f"{path}: weights do not match the model (missing {sorted(missing)[:3]}, "
                                      f"unexpected {sorted(unexpected)[:3]})")
            optimizer.load_state_dict(opt)
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(load_file(str(path / "rng.safetensors")), state["rng"])
    except (OSError, json.JSONDecodeError, KeyError, ValueError, SafetensorError, RuntimeError) as e:
        raise CheckpointError(f"{path}: cannot resume: {e}") from e
    log.info("resumed from %s (step %d)", path, state["step"])
    return state
