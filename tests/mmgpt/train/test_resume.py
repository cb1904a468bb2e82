"""Exact resume: a run killed with SIGKILL and resumed ends bitwise equal to an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from mmgpt.train import TrainConfig, train
from mmgpt.train.resume import latest_checkpoint
from tests.mmgpt.train.conftest import ROOT, overrides, recipe

RECIPE = recipe("stage3_instruct")
STEPS, EVERY = 24, 3


def run_args(st_data, base_ckpt, out, workers=0):
    return overrides(st_data, out, init_from=base_ckpt, max_steps=STEPS, save_every=EVERY, keep_last=2,
                     name="resume", **{"data.num_workers": workers})


@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_and_resume_is_bitwise_identical(st_data, base_ckpt, tmp_path, workers):
    # Uninterrupted reference, in this process.
    ref = train(TrainConfig.from_yaml(RECIPE, run_args(st_data, base_ckpt, tmp_path / "a")))  # no workers
    expected = load_file(str(ref / "model.safetensors"))

    # Same run in a subprocess, killed without warning once a checkpoint exists mid-run.
    out = tmp_path / "b"
    cmd = [sys.executable, "-m", "mmgpt.cli", "train", str(RECIPE), *run_args(st_data, base_ckpt, out, workers)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpts = out / "resume" / "checkpoints"
    deadline = time.time() + 120
    while latest_checkpoint(ckpts) is None and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = latest_checkpoint(ckpts)
    assert killed_at is not None, proc.stderr.read().decode()[-2000:]
    assert not (out / "resume" / "final").exists(), "the run finished before it was killed"
    step = int(killed_at.name.split("-")[1])
    assert 0 < step < STEPS

    resumed = train(TrainConfig.from_yaml(RECIPE, [*run_args(st_data, base_ckpt, out, workers), "resume=true"]))
    got = load_file(str(resumed / "model.safetensors"))
    assert got.keys() == expected.keys()
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not different, different[:5]
    # Metrics after resume continue the same curve (no duplicated or missing steps).
    import json

    steps = [json.loads(x)["step"] for x in (out / "resume" / "metrics.jsonl").read_text().splitlines()
             if '"train"' in x]
    assert steps == list(range(1, STEPS + 1))
    assert len(list(ckpts.glob("step-*"))) <= 2  # keep_last


def test_metrics_log_on_resume_keeps_history_and_the_file_never_goes_missing(tmp_path, monkeypatch):
    import json as _json

    import mmgpt.train.metrics as M

    path = tmp_path / "metrics.jsonl"
    lines = [_json.dumps({"kind": "train", "step": s}) for s in (1, 2, 3)]
    path.write_text("\n".join(lines) + "\n{\"cut by a ki")
    seen = []
    real = M.atomic_write_text

    def spy(target, text):  # before each write, metrics.jsonl is there for a reader polling it
        seen.append(path.is_file())
        real(target, text)

    monkeypatch.setattr(M, "atomic_write_text", spy)
    log = M.MetricsLog(tmp_path, resume_at=2)
    assert seen == [True, True] and path.is_file()
    assert [r["step"] for r in log.records()] == [1, 2]
    assert (tmp_path / "metrics.jsonl.1").read_text().startswith(lines[0])  # the whole old file, cut line too
    assert (tmp_path / "metrics.jsonl.1").read_text().endswith("cut by a ki")
