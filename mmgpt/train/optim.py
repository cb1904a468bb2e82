"""Optimiser and schedule: AdamW with per-part learning rates, warm-up + cosine."""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from mmgpt.errors import ConfigError
from mmgpt.modalities import MODALITIES
from mmgpt.train.config import OptimConfig

log = logging.getLogger(__name__)


def _lr_for(name: str, cfg: OptimConfig) -> float:
    best, best_len = cfg.lr, -1
    for key, lr in cfg.lr_per_part.items():
        if (name == key or name.startswith(key + ".")) and len(key) > best_len:
            best, best_len = lr, len(key)
    return best


def param_groups(named_params: list[tuple[str, nn.Parameter]], cfg: OptimConfig) -> list[dict]:
    """Group trainable parameters by (learning rate, decay): matrices decay; biases, norms and
    embeddings do not. Parameter names are the model's (``adapters.image.proj.net.0.weight``)."""
    groups: dict[tuple[float, bool], dict] = {}
    seen: set[int] = set()
    for name, p in named_params:
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        lr = _lr_for(name, cfg)
        decay = p.ndim >= 2 and "embed" not in name and "norm" not in name
        g = groups.setdefault((lr, decay), {"params": [], "names": [], "lr": lr,
                                            "weight_decay": cfg.weight_decay if decay else 0.0})
        g["params"].append(p)
        g["names"].append(name)
    return [groups[k] for k in sorted(groups, key=lambda k: (k[0], k[1]))]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of ``model``, with the fused kernel (one pass over each
    parameter, its gradient and both moments: 3x faster than ``foreach`` on the CPU, measured in
    BENCHMARKS.md); ``foreach`` where the parameters' device has no fused kernel.

    Raises:
        ConfigError: nothing is trainable, or an ``lr_per_part`` key names no parameter.
    """
    named = list(model.named_parameters())
    optional = {f"{group}.{m}" for group in ("encoders", "adapters") for m in MODALITIES}  # left-out modalities
    for key in cfg.lr_per_part:
        if key not in optional and not any(n == key or n.startswith(key + ".") for n, _ in named):
            parts = sorted({".".join(n.split(".")[:2]) for n, _ in named})
            raise ConfigError(f"optim.lr_per_part.{key}: names no parameter of the model (parts: {', '.join(parts)})")
    groups = param_groups(named, cfg)
    if not groups:
        raise ConfigError("no trainable parameters: check the stage's `trainable` flags")
    for g in groups:
        g.pop("names")
    from torch.distributed.tensor import DTensor

    params = [p for g in groups for p in g["params"]]
    sharded = any(isinstance(p, DTensor) for p in params)  # FSDP2: keep foreach
    fused = not sharded and params[0].device.type in ("cpu", "cuda", "mps", "xpu")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                             fused=fused or None, foreach=None if fused else True)


def lr_lambda(cfg: OptimConfig, total_steps: int):
    """Multiplier of each group's base LR at a step: linear warm-up, then cosine to ``min_lr_ratio``."""

    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f
