"""Autocast precision by measurement: the dtype that runs fastest here, not the one a flag suggests.

``precision: auto`` used to mean "bf16 when the CPU advertises it". That is wrong both ways:
on a CPU with AMX a bf16 matmul ran about 5x faster than fp32, on another Xeon with the same
flag emulated bf16 ran at half the fp32 speed. So ``auto`` times a short probe in each
candidate dtype on the actual device and picks the faster one.

The probe is what a training step spends its time on: a Linear of the model's widths, forward
and backward on a batch of tokens, under the autocast being judged (so the casts autocast adds
are paid too). Shapes: T probe tokens, H the decoder width, F its MLP width::

    x (T, H) -> Linear(H, F) under autocast -> (T, F) -> sum -> backward

Each candidate gets one warm-up and the best of ``repeats`` timed runs (a fraction of a
second in all). Results are cached per machine, torch version, thread count and shape in
``$MMGPT_CACHE_DIR`` (default ``~/.cache/mmgpt``) ``/precision.json``, so later runs skip it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import time
import uuid
from pathlib import Path

import torch

log = logging.getLogger(__name__)

CANDIDATES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}
PRECISIONS = ("auto", *CANDIDATES)
MAX_PROBE_TOKENS = 4096  # enough to fill the matmul units; keeps the probe well under a second
_MEMO: dict[str, dict[str, float]] = {}


def cache_dir() -> Path:
    """Where mmgpt keeps per-machine measurements (``$MMGPT_CACHE_DIR``, else ``~/.cache/mmgpt``)."""
    env = os.environ.get("MMGPT_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mmgpt"


def device_name(device: torch.device) -> str:
    """A name for the hardware behind ``device``: the GPU's, or the CPU model with the thread count."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{device.type}:{model}:{torch.get_num_threads()} threads"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def probe_rate(device: torch.device, dtype: torch.dtype | None, tokens: int, width: int, ffn: int,
               repeats: int = 3) -> float:
    """Achieved FLOP/s of a Linear(width, ffn) forward + backward on ``tokens`` rows under autocast to
    ``dtype`` (None: plain fp32), best of ``repeats`` runs after one warm-up."""
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(width, ffn).to(device)
    x = torch.randn(tokens, width, generator=g).to(device).requires_grad_(True)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            y = lin(x)  # (T, F)
        y.float().sum().backward()

    step()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 3 * 2 * tokens * width * ffn / best  # forward + two backward matmuls


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path, key: str, rates: dict[str, float]) -> None:
    """Add one entry to the cache file (temp file + rename); an unwritable cache is only skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read_cache(path)
        data[key] = rates
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError as e:
        log.debug("precision probe cache %s not written: %s", path, e)


def measure(device: torch.device, width: int = 256, ffn: int = 1024, tokens: int = 2048,
            use_cache: bool = True) -> dict[str, float]:
    """Probe FLOP/s of every candidate dtype (see the module docstring), from the cache when present.

    Args:
        device: where the model runs.
        width, ffn: the decoder's hidden and MLP widths.
        tokens: tokens per micro-batch (capped at ``MAX_PROBE_TOKENS``).
        use_cache: read and write the per-machine cache file.

    Returns:
        ``{"fp32": flops, "bf16": flops}``; a dtype the device cannot run at all is left out.
    """
    tokens = max(64, min(int(tokens), MAX_PROBE_TOKENS))
    key = f"{device_name(device)}|torch {torch.__version__}|{tokens}x{width}x{ffn}"
    path = cache_dir() / "precision.json"
    if key in _MEMO:
        return _MEMO[key]
    cached = _read_cache(path).get(key) if use_cache else None
    if isinstance(cached, dict) and set(cached) == set(CANDIDATES):
        _MEMO[key] = {k: float(v) for k, v in cached.items()}
        return _MEMO[key]
    rates = {}
    for name, dtype in CANDIDATES.items():
        try:
            rates[name] = probe_rate(device, dtype, tokens, width, ffn)
        except RuntimeError as e:  # no kernel for this dtype on this device
            log.info("precision probe: %s does not run on %s (%s)", name, device, e)
    _MEMO[key] = rates
    if use_cache and set(rates) == set(CANDIDATES):
        _write_cache(path, key, rates)
    return rates


def choose(rates: dict[str, float]) -> str:
    """The fastest candidate in ``rates`` (fp32 on a tie or when nothing else ran)."""
    return max(rates, key=lambda k: (rates[k], k == "fp32"), default="fp32")


def resolve_precision(precision: str, device: torch.device, width: int = 256, ffn: int = 1024,
                      tokens: int = 2048) -> torch.dtype | None:
    """The autocast dtype for ``precision`` (None means plain fp32).

    Args:
        precision: ``auto`` (measure each candidate, take the faster), ``bf16`` or ``fp32``.
        device: where the model runs.
        width, ffn, tokens: the probe's shape: the model's hidden and MLP widths, tokens per
            micro-batch.

    Returns:
        ``torch.bfloat16`` or None.

    Raises:
        ValueError: an unknown ``precision``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return CANDIDATES[precision]
    if device.type not in ("cpu", "cuda"):
        return None
    rates = measure(device, width, ffn, tokens)
    chosen = choose(rates)
    log.info("precision auto on %s: %s (probe %s)", device_name(device), chosen,
             ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in rates.items()))
    return CANDIDATES[chosen]


def model_widths(model) -> dict[str, int]:
    """The probe widths of an mmgpt model: its decoder's hidden and MLP sizes."""
    cfg = model.decoder.config
    width = int(getattr(cfg, "hidden_size", 256))
    return {"width": width, "ffn": int(getattr(cfg, "intermediate_size", None) or 4 * width)}


def autocast(device: torch.device, dtype: torch.dtype | None):
    """An autocast context to ``dtype`` on ``device``; a no-op for None (plain fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
