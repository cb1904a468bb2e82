"""Timing and memory for one measurement: build each side, warm up, alternate, take medians.

A *measurement* has named *sides* (``mmgpt`` / ``llava``, ``packed`` / ``padded`` / ...). Each
side is a factory that builds what it needs and returns a step function; a step does one unit
of work (a train step, a generate call, an epoch) and may return extra numbers (seconds of
prefill, tokens). The driver runs ``warmup`` steps of every side (excluded), then ``repeats``
rounds of one step per side in alternating order (A B, B A, A B, ...), so slow drift of the
machine hits every side alike, and reports the median of each number per side.

Memory: on CUDA the driver records ``torch.cuda.max_memory_allocated`` per side in the same
process (the allocator's peak is reset before each side). On the CPU a process's peak RSS
cannot be split between sides, so :func:`measure_memory` builds and runs one side alone in its
own child process and reports that child's ``ru_maxrss`` (and the RSS before building, so the
cost of the interpreter and imports can be told apart).
"""

from __future__ import annotations

import gc
import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

Step = Callable[[], dict[str, float] | None]
SideFactory = Callable[[], tuple[Step, dict[str, Any]]]


@dataclass
class Settings:
    """What every measurement child gets: sizes, repeats, threads, device, seed."""

    quick: bool = False
    repeats: int = 5
    warmup: int = 1
    threads: int = 0  # 0: os.cpu_count()
    device: str = "cpu"
    seed: int = 0
    workdir: str = "runs/bench/work"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)


def setup_process(settings: Settings) -> None:
    """Fix threads and seeds before anything is built; flush denormals (a CPU's slow path)."""
    threads = settings.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(settings.seed)
    torch.set_flush_denormal(True)


def sync(device: torch.device) -> None:
    """Wait for queued device work (CUDA kernels run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux ``/proc``; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


def max_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _timed(step: Step, device: torch.device) -> dict[str, float]:
    sync(device)
    t0 = time.perf_counter()
    extra = step() or {}
    sync(device)
    return {"seconds": time.perf_counter() - t0, **extra}


def alternate(sides: dict[str, SideFactory], settings: Settings) -> dict[str, dict[str, Any]]:
    """Build every side, warm up, run ``repeats`` alternating rounds; medians per side.

    Returns:
        side -> ``{"median": {metric: value}, "runs": {metric: [values]}, "info": {...},
        "peak_mem_mb": float | None, "mem_scope": str}``.
    """
    device = settings.torch_device
    steps: dict[str, Step] = {}
    out: dict[str, dict[str, Any]] = {}
    for name, factory in sides.items():
        step, info = factory()
        steps[name] = step
        out[name] = {"info": info, "runs": {}, "peak_mem_mb": None, "mem_scope": None}
    cuda = device.type == "cuda"
    for step in steps.values():
        for _ in range(settings.warmup):
            _timed(step, device)
    order = list(steps)
    for r in range(settings.repeats):
        for name in order if r % 2 == 0 else order[::-1]:
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            rec = _timed(steps[name], device)
            for k, v in rec.items():
                out[name]["runs"].setdefault(k, []).append(float(v))
            if cuda:
                peak = torch.cuda.max_memory_allocated(device) / 2**20
                out[name]["peak_mem_mb"] = max(out[name]["peak_mem_mb"] or 0.0, peak)
                out[name]["mem_scope"] = "cuda max_memory_allocated, per side"
    for name in out:
        out[name]["median"] = {k: _median(v) for k, v in out[name]["runs"].items()}
    if not cuda:
        shared = max_rss_mb()
        for name in out:
            out[name]["peak_mem_mb"] = shared
            out[name]["mem_scope"] = "ru_maxrss of the pair's child (max over its sides)"
    del steps
    gc.collect()
    return out


def measure_memory(factory: SideFactory, settings: Settings) -> dict[str, float]:
    """Build and run one side alone (warm-up + one step) in this process; peak RSS in MiB.

    Call it in a fresh child that builds nothing else, so ``ru_maxrss`` belongs to this side.
    """
    base = rss_mb()
    step, _ = factory()
    device = settings.torch_device
    for _ in range(max(1, settings.warmup) + 1):
        _timed(step, device)
    if device.type == "cuda":
        return {"peak_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20, "baseline_rss_mb": base}
    return {"peak_mem_mb": max_rss_mb(), "baseline_rss_mb": base}
