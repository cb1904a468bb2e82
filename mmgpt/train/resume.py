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
from mmgpt.pretrained import check_tensors, distinct_tensors
from mmgpt.safe_io import atomic_dir, atomic_write_text, verify_manifest, write_manifest

log = logging.getLogger(__name__)
LATEST = "latest"
FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors", "trainer_state.json")


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
    """The checkpoint to resume from under ``root``: the one ``latest`` names, or (a kill came
    between a checkpoint's rename and the pointer's first write) the newest complete
    ``step-*``; None when there is none at all.

    Raises:
        CheckpointError: ``latest`` names a checkpoint that is not there (with what is there).
    """
    pointer = root / LATEST
    found = sorted(p.name for p in root.glob("step-*") if p.is_dir()) if root.is_dir() else []
    if not pointer.is_file():
        if found:
            log.warning("%s: no %s pointer; resuming from the newest checkpoint, %s", root, LATEST, found[-1])
            return root / found[-1]
        return None
    name = pointer.read_text().strip()
    path = root / name
    if not name.startswith("step-") or "/" in name or not path.is_dir():
        raise CheckpointError(f"{pointer} names {name!r}, which is not a checkpoint folder there (found: "
                              f"{found or 'none'}); point it at one of them or start without resume")
    return path


# Settings that do not move the sample schedule or the model: a resume may change them.
RUN_ONLY = ("name", "out_dir", "resume", "progress", "log_every", "val_every", "save_every", "keep_last",
            "time_limit", "threads", "compile", "eval", "data.val", "data.val_media_folder", "data.val_limit",
            "data.num_workers", "data.prefetch", "data.on_error", "data.max_bad_fraction")


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    return {prefix: data}


def config_changes(saved: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """``"key: saved -> now"`` for every setting that differs and is not run-only (:data:`RUN_ONLY`)."""
    a, b = _flat(saved or {}), _flat(now)

    def run_only(key: str) -> bool:
        return any(key == k or key.startswith(k + ".") for k in RUN_ONLY)

    return [f"{k}: {a.get(k, '(unset)')!r} -> {b.get(k, '(unset)')!r}"
            for k in sorted(set(a) | set(b)) if not run_only(k) and a.get(k) != b.get(k)]


def check_optimizer_state(path: Path, optimizer, opt: dict) -> None:
    """The saved optimiser state fits the optimiser: same groups, and each parameter's state
    tensors of its shape.

    Raises:
        CheckpointError: naming the first parameter that does not fit.
    """
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if len(opt["param_groups"]) != len(optimizer.param_groups):
        raise CheckpointError(f"{path}: optimizer state has {len(opt['param_groups'])} parameter groups, the "
                              f"optimiser {len(optimizer.param_groups)}")
    for idx, entry in opt["state"].items():
        if not isinstance(idx, int) or not 0 <= idx < len(params):
            raise CheckpointError(f"{path}: optimizer state names parameter {idx!r} of {len(params)}")
        for key, value in entry.items():
            if isinstance(value, torch.Tensor) and value.dim() and value.shape != params[idx].shape:
                raise CheckpointError(f"{path}: optimizer {key} of parameter {idx} is {list(value.shape)}, "
                                      f"the parameter {list(params[idx].shape)}")


def load_training_checkpoint(path: Path, model: torch.nn.Module, optimizer, scheduler,
                             sharded: bool = False) -> dict[str, Any]:
    """Restore model, optimiser, scheduler and RNG from ``path``; returns the trainer state.

    ``sharded``: the model is FSDP2-sharded; every process reads the full state and keeps its
    shards (call on every process).

    Raises:
        CheckpointError: a file is missing or damaged, or does not fit the model / optimiser.
    """
    verify_manifest(path, required=FILES)
    try:
        state = json.loads((path / "trainer_state.json").read_text())
        opt = _unflatten_optimizer(load_file(str(path / "optimizer.safetensors")), state["optimizer"])
        if not sharded:
            check_tensors(path / "model.safetensors", model)
            check_optimizer_state(path, optimizer, opt)
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
    except CheckpointError:
        raise
    except (OSError, json.JSONDecodeError, KeyError, ValueError, SafetensorError, RuntimeError, TypeError,
            AttributeError, IndexError) as e:
        raise CheckpointError(f"{path}: cannot resume: {type(e).__name__}: {e}") from e
    log.info("resumed from %s (step %d)", path, state["step"])
    return state
