"""Feeding the loop: worker processes change no bit, resume stays exact with them, and bad media
mid-run are replaced by the next good sample (counted, and fatal only past the stated fraction)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmgpt.errors import DataError, InvalidMediaError
from mmgpt.train import TrainConfig, train
from mmgpt.train.loader import BadCount, Draw
from tests.mmgpt.train.conftest import overrides, recipe


def losses(run_dir: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (run_dir / "metrics.jsonl").read_text().splitlines() if '"train"' in x]


def run(st_data, base_ckpt, out, name, data=None, **kw):
    """Stage 3 on every row (no task filter: sample i is line i + 1 of train.jsonl)."""
    args = overrides(data or st_data, out, init_from=base_ckpt, name=name,
                     **{"data.val": "null", "data.tasks": "null", **kw})
    cfg = TrainConfig.from_yaml(recipe("stage3_instruct"), args)
    return cfg, train(cfg)


def test_two_workers_give_bitwise_the_losses_and_weights_of_none(st_data, base_ckpt, tmp_path):
    """Frozen encoders' features cached, packing on: only where batches are built changes."""
    # separate out_dirs: each run starts with an empty feature cache
    a, fa = run(st_data, base_ckpt, tmp_path / "a", "w0", max_steps=6, **{"data.num_workers": 0})
    b, fb = run(st_data, base_ckpt, tmp_path / "b", "w2", max_steps=6, **{"data.num_workers": 2})
    assert losses(a.run_dir) == losses(b.run_dir) and len(losses(a.run_dir)) == 6
    wa, wb = load_file(str(fa / "model.safetensors")), load_file(str(fb / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    cache = json.loads((b.run_dir / "summary.json").read_text())["feature_cache"]
    assert cache["image"]["misses"] > 0  # the cache was in the path


def broken_copy(st_data: Path, dest: Path, corrupt: int, missing: int) -> tuple[Path, list[int]]:
    """A copy of the data whose rows ``corrupt`` and ``missing`` point at a broken and at no
    image; returns it and the indices of every row that uses either file."""
    shutil.copytree(st_data, dest)
    rows = [json.loads(x) for x in (dest / "train.jsonl").read_text().splitlines()]

    def images(row):
        parts = row.get("document") or [p for m in row["messages"] if isinstance(m["content"], list) for p in m["content"]]
        return [p["image"] for p in parts if p["type"] == "image"]

    with_image = [i for i, r in enumerate(rows) if images(r)]
    bad_png, gone_png = images(rows[with_image[corrupt]])[0], images(rows[with_image[missing]])[0]
    (dest / bad_png).write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (dest / gone_png).unlink()
    bad_rows = [i for i, r in enumerate(rows) if {bad_png, gone_png} & set(images(r))]
    return dest, bad_rows


def test_bad_media_mid_run_are_replaced_by_the_next_good_sample(st_data, base_ckpt, tmp_path):
    from mmgpt.train.data import Schedule

    data, bad_rows = broken_copy(st_data, tmp_path / "data", corrupt=3, missing=9)
    steps = 10  # 10 x 4 of the 160 rows
    drawn = [i for s in range(steps) for mb in Schedule(160, 4, 1, seed=0).micro_batches(s) for i in mb]
    stepped_over = set()  # a drawn bad row, and the bad rows right after it, up to the next good one
    for i in drawn:
        while i in bad_rows:
            stepped_over.add(i)
            i = (i + 1) % 160
    assert stepped_over, "the schedule must draw a bad row for this test to say anything"
    with pytest.raises(InvalidMediaError):
        run(st_data, base_ckpt, tmp_path, "raise", data=data, max_steps=steps, **{"data.num_workers": 1})
    cfg, _ = run(st_data, base_ckpt, tmp_path, "skip", data=data, max_steps=steps,
                 **{"data.on_error": "skip", "data.max_bad_fraction": 0.5, "data.num_workers": 1})
    summary = json.loads((cfg.run_dir / "summary.json").read_text())
    assert summary["bad_samples"] == len(stepped_over)
    assert len(losses(cfg.run_dir)) == steps
    # the same run again gives the same losses: replacement depends only on the data
    again, _ = run(st_data, base_ckpt, tmp_path, "skip2", data=data, max_steps=steps,
                   **{"data.on_error": "skip", "data.max_bad_fraction": 0.5, "data.num_workers": 0})
    assert losses(again.run_dir) == losses(cfg.run_dir)
    with pytest.raises(DataError, match=r"samples are bad, more than data.max_bad_fraction=0"):
        run(st_data, base_ckpt, tmp_path, "strict", data=data, max_steps=steps,
            **{"data.on_error": "skip", "data.max_bad_fraction": 0.0, "data.num_workers": 0})


class Items:
    """Items 0..n-1; the ones in ``bad`` fail like a broken image."""

    def __init__(self, n, bad):
        self.n, self.bad = n, set(bad)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i in self.bad:
            raise InvalidMediaError(f"row {i}: broken image")
        return f"item{i}"


def test_draw_replaces_by_the_next_good_item_and_the_count_stops_past_the_fraction():
    draw = Draw(Items(6, {2, 3, 5}), "skip")
    assert draw[1].item == "item1" and draw[1].bad == []
    got = draw[2]
    assert got.item == "item4" and [i for i, _ in got.bad] == [2, 3]
    assert draw[5].item == "item0"  # wraps round
    with pytest.raises(InvalidMediaError, match="row 2"):
        Draw(Items(6, {2}), "raise")[2]
    with pytest.raises(DataError, match="every one of the 3 samples failed"):
        Draw(Items(3, {0, 1, 2}), "skip")[1]
    count = BadCount(size=100, max_fraction=0.02)
    count.add([(2, "x"), (3, "y"), (2, "x")])  # 2 distinct: at the limit, not past it
    with pytest.raises(DataError, match="3 of 100 samples are bad"):
        count.add([(7, "z")])


def test_default_workers_leave_the_cpu_to_the_step_and_feed_a_gpu(monkeypatch):
    import os

    from mmgpt.train.loader import default_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert default_workers(1, torch.device("cpu")) == 0
    assert default_workers(1, torch.device("cuda", 0)) == 15
    assert default_workers(4, torch.device("cuda", 0)) == 3  # each of 4 processes: its 4 cores less one
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert default_workers(1, torch.device("cuda", 0)) == 0
