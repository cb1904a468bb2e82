"""``benchmarks/gpu.sh``: valid bash, and on a machine without CUDA its CPU fallback runs the
bench (quick) and writes the table with the note of where it ran."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.sh"


def test_the_script_is_valid_bash():
    res = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_cpu_fallback_runs_the_bench_and_writes_the_table(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: the script would measure on it")
    env = {**os.environ, "OUT": str(tmp_path / "out"), "ONLY": "audio", "PYTHON": sys.executable}
    res = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "no CUDA device: CPU fallback with --quick" in res.stdout
    table = (tmp_path / "out" / "BENCHMARKS.md").read_text()
    assert "log-mel" in table and "benchmarks/gpu.sh on cpu" in table
    assert (tmp_path / "out" / "bench.json").is_file()
