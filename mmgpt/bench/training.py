"""Helpers for the measurements that train through mmgpt's own :class:`~mmgpt.train.trainer.Trainer`.

ShapesTones data is generated once per work folder and reused by later children; a trainer is
built from a :class:`~mmgpt.train.config.TrainConfig` like ``mmgpt train`` builds it; and
:func:`run_steps` runs the body of the trainer's loop (micro-batches, loss over the global
number of targets, backward, clip, AdamW, schedule) without its logging, evaluation and saving.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


def ensure_shapestones(root: str | Path, n: int, seed: int, mix: dict[str, float] | None = None,
                       scene_lines: float = 8.0, image_size: int = 64) -> Path:
    """``root/train.jsonl`` with ``n`` ShapesTones lines (generated unless the same set is there)."""
    from mmgpt.datasets.shapestones import generate

    root = Path(root)
    stamp = root / "bench_data.json"
    want = {"n": n, "seed": seed, "mix": mix, "scene_lines": scene_lines, "image_size": image_size}
    if stamp.is_file() and json.loads(stamp.read_text()) == want and (root / "train.jsonl").is_file():
        return root / "train.jsonl"
    generate(root, train=n, val=0, test=0, gen=0, seed=seed, mix=mix, scene_lines=scene_lines, progress=False,
             image_size=image_size)
    stamp.write_text(json.dumps(want))
    return root / "train.jsonl"


class Memo:
    """A dataset whose processed samples are kept after first use (media decoded once)."""

    def __init__(self, data) -> None:
        self.data = data
        self.cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        if i not in self.cache:
            self.cache[i] = self.data[i]
        return self.cache[i]


def build_trainer(workdir: Path, name: str, preset_yaml: Path, train_path: Path, settings, **overrides):
    """A :class:`Trainer` with quiet output under ``workdir/runs/name``; ``overrides`` are
    :class:`TrainConfig` fields (``stage``, ``batch_size``, ``data`` as a dict, ...)."""
    from mmgpt.config import from_dict
    from mmgpt.train.config import TrainConfig
    from mmgpt.train.trainer import Trainer

    data = {"train": str(train_path), **overrides.pop("data", {})}
    cfg = from_dict(TrainConfig, {
        "name": name, "out_dir": str(workdir / "runs"), "model": str(preset_yaml), "data": data,
        "progress": False, "seed": settings.seed, "threads": settings.threads or None, "log_every": 10**9,
        **overrides,
    })
    return Trainer(cfg)


def run_steps(trainer, steps: range) -> dict[str, float]:
    """The trainer's step for each of ``steps``; counts real and padded token slots.

    Returns:
        ``{"useful_tokens", "slots", "targets", "loss"}`` summed over the steps.
    """
    useful = slots = targets = 0
    loss_total = 0.0
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    for step in steps:
        batches = trainer.micro_batches(step)
        n_global = sum(b["target_weight"] for b in batches)
        for b in batches:
            useful += int(b["attention_mask"].sum())
            slots += int(b["input_ids"].numel())
            out = trainer.loss(b)
            (out.loss_sum / max(n_global, 1)).backward()
            loss_total += float(out.loss_sum.detach())
        targets += n_global
        torch.nn.utils.clip_grad_norm_(params, trainer.cfg.optim.grad_clip)
        trainer.optimizer.step()
        trainer.scheduler.step()
        trainer.optimizer.zero_grad(set_to_none=True)
    return {"useful_tokens": useful, "slots": slots, "targets": targets, "loss": loss_total / max(targets, 1)}
