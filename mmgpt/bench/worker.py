"""Child processes: one fresh process per measurement pair (and per side, for CPU memory).

``python -m mmgpt.bench.worker --serve`` imports torch, transformers, timm and mmgpt once,
then reads one JSON spec per line on stdin and runs each in a child forked from that clean
state (no model built, no kernel run, no thread pool started before the fork), so every
measurement starts in a fresh process without paying the imports again. Where ``fork`` is
missing, ``python -m mmgpt.bench.worker SPEC.json`` runs one spec in a fresh interpreter.

A spec: ``{"id", "measurement", "args", "settings", "side" (None: the A/B pair; a name: that
side alone, for its peak memory), "out" (result JSON path)}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

PRELOAD = ("torch", "numpy", "transformers", "timm", "librosa", "mmgpt.model", "mmgpt.train.trainer",
           "transformers.models.llava.modeling_llava", "transformers.models.clip.modeling_clip")


def measurement_sides(name: str, settings, args: dict[str, Any]):
    """The side factories of measurement ``name`` (``train``, ``generate``, ``packing``, ...)."""
    if name == "train":
        from mmgpt.bench import train_step

        return train_step.sides(settings, args["precision"], args.get("compile", False))
    if name == "generate":
        from mmgpt.bench import generation

        return generation.sides(settings, args["batch"], args.get("compile", False))
    if name == "packing":
        from mmgpt.bench import packing

        return packing.sides(settings)
    if name == "feature_cache":
        from mmgpt.bench import cache

        return cache.sides(settings)
    if name == "serve":
        from mmgpt.bench import serve

        return serve.sides(settings)
    if name == "scale":
        from mmgpt.bench import scale

        return scale.sides(settings)
    if name == "loader":
        from mmgpt.bench import loader

        return loader.sides(settings)
    if name == "audio_frontend":
        from mmgpt.bench import audio

        return audio.sides(settings)
    if name == "mfu":
        from mmgpt.bench import mfu

        return mfu.sides(settings)
    raise ValueError(f"unknown measurement {name!r}")


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one spec in this process and return its result (see the module docstring)."""
    import logging

    import torch

    from mmgpt.bench.timing import Settings, alternate, measure_memory, rss_mb, setup_process

    logging.disable(logging.WARNING)  # trimming notices of long samples, and the like
    settings = Settings(**spec["settings"])
    setup_process(settings)
    t0 = time.perf_counter()
    sides = measurement_sides(spec["measurement"], settings, spec.get("args", {}))
    result: dict[str, Any] = {"id": spec["id"], "measurement": spec["measurement"], "args": spec.get("args", {}),
                              "threads": torch.get_num_threads(), "start_rss_mb": rss_mb()}
    if spec.get("side"):
        result["memory"] = measure_memory(sides[spec["side"]], settings)
        result["side"] = spec["side"]
    else:
        if spec["measurement"] == "mfu":
            from mmgpt.bench import mfu

            result["peaks"] = mfu.peaks(settings)
            result["auto"] = mfu.auto_choice(settings)
        result["sides"] = alternate(sides, settings)
    result["wall_s"] = time.perf_counter() - t0
    return result


def _run_and_write(spec: dict[str, Any]) -> int:
    out = Path(spec["out"])
    try:
        result = run_spec(spec)
        code = 0
    except BaseException as e:  # reported to the parent, which carries on with the other measurements
        result = {"id": spec["id"], "measurement": spec["measurement"], "error": f"{type(e).__name__}: {e}",
                  "traceback": traceback.format_exc()}
        code = 1
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str))
    os.replace(tmp, out)
    return code


def serve() -> None:
    """Preload, then fork one child per spec line; answer each with ``{"id", "status"}``."""
    import importlib

    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        spec = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: run, write, leave without running the parent's exit handlers
            code = 1
            try:
                code = _run_and_write(spec)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"id": spec["id"], "status": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    elif len(sys.argv) == 2:
        sys.exit(_run_and_write(json.loads(Path(sys.argv[1]).read_text())))
    else:
        sys.exit("usage: python -m mmgpt.bench.worker --serve | SPEC.json")
