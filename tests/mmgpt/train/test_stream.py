"""Streamed tar shards: every sample once an epoch, shards split between processes and workers,
worker count and resume change no bit, bad keys skipped or fatal as asked."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmgpt.datasets.readers import read_webdataset
from mmgpt.datasets.readers.stream import ShardStream
from mmgpt.errors import CheckpointError, ConfigError, DataError
from mmgpt.train import TrainConfig, train
from mmgpt.train.stream import StreamLoader, StreamPlan, shuffled
from tests.mmgpt.train.conftest import ROOT, overrides, recipe


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def text_shards(root: Path, shards: int, keys: int, bad: set[str] = frozenset()) -> str:
    """``shards`` .tar.gz shards of ``keys`` caption-only keys each (``s<i>k<j>``); keys in
    ``bad`` get a .json that is not JSON. Returns the glob."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(shards):
        with tarfile.open(root / f"shard-{i:02d}.tar.gz", "w:gz") as tar:
            for j in range(keys):
                key = f"s{i}k{j}"
                add(tar, f"{key}.txt", f"caption {key}".encode())
                if key in bad:
                    add(tar, f"{key}.json", b"{not json")
    return str(root / "shard-*.tar.gz")


def _with_members(row: dict, base: Path) -> tuple[dict, list[tuple[str, bytes]]]:
    """The row with each media path replaced by a member extension, and those members."""
    members: list[tuple[str, bytes]] = []

    def member(part):
        if isinstance(part, dict) and part.get("type") in ("image", "audio"):
            path = base / part[part["type"]]
            ext = f"{len(members)}{path.suffix}"
            members.append((ext, path.read_bytes()))
            return {**part, part["type"]: ext}
        return part

    if "document" in row:
        row["document"] = [member(p) for p in row["document"]]
    else:
        for m in row["messages"]:
            if isinstance(m["content"], list):
                m["content"] = [member(p) for p in m["content"]]
    return row, members


def rows_to_shards(jsonl: Path, root: Path, shards: int) -> str:
    """A ShapesTones JSONL as .tar.gz WebDataset shards: each row a native .json whose media
    parts name the key's members (``0.png``, ``1.wav``...), the media files as members."""
    root.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(x) for x in jsonl.read_text().splitlines()]
    with contextlib.ExitStack() as stack:
        tars = [stack.enter_context(tarfile.open(root / f"part-{i}.tar.gz", "w:gz")) for i in range(shards)]
        for n, raw in enumerate(rows):
            row, members = _with_members(raw, jsonl.parent)
            add(tars[n % shards], f"{n:06d}.json", json.dumps(row).encode())
            for ext, data in members:
                add(tars[n % shards], f"{n:06d}.{ext}", data)
    return str(root / "part-*.tar.gz")


def keys_of(items) -> list[str]:
    return [s.meta["key"] for s in items]


def test_each_epoch_reads_every_sample_once_and_processes_split_the_shards(tmp_path):
    source = ShardStream(read_webdataset(text_shards(tmp_path, shards=6, keys=7)))
    everything = sorted(f"s{i}k{j}" for i in range(6) for j in range(7))
    plan = StreamPlan(6, streams=4, seed=1, buffer=5)
    for epoch in (0, 1):
        got = [k for s in range(plan.count) for k in keys_of(shuffled(source, plan, s, epoch))]
        assert sorted(got) == everything
    # a fresh order per epoch, the same on every construction
    first = keys_of(shuffled(source, plan, 0, 0))
    assert first == keys_of(shuffled(source, StreamPlan(6, streams=4, seed=1, buffer=5), 0, 0))
    assert first != keys_of(shuffled(source, plan, 0, 1))
    # the buffer shuffles within the stream; a buffer of 1 keeps tar order
    tar_order = [k for sh in plan.shards(0, 0) for k in keys_of(source.read(source.shards[sh]))]
    assert keys_of(shuffled(source, StreamPlan(6, 4, seed=1, buffer=1), 0, 0)) == tar_order
    assert first != tar_order and sorted(first) == sorted(tar_order)
    # two processes: disjoint streams, disjoint shards, all of them
    ranks = [StreamPlan(6, streams=4, world_size=2, rank=r, seed=1) for r in (0, 1)]
    assert ranks[0].local() == [0, 2] and ranks[1].local() == [1, 3]
    shards = [sh for p in ranks for s in p.local() for sh in p.shards(s, 0)]
    assert sorted(shards) == list(range(6))
    with pytest.raises(DataError, match="cannot feed 3 processes"):
        StreamPlan(2, streams=8, world_size=3)


def loader(source, workers=0, streams=4, batch=3, accum=2):
    plan = StreamPlan(len(source.shards), streams=streams, seed=2, buffer=4)
    return StreamLoader(source, plan, lambda s: s.meta["key"], list, batch, accum, num_workers=workers)


def run_steps(ld: StreamLoader, start: int, end: int) -> list:
    return [(step, batches, bad) for step, batches, bad in ld.steps(start, end)]


@pytest.mark.parametrize("workers", [0, 2])
def test_workers_and_resume_give_the_batches_of_one_uninterrupted_process(tmp_path, workers):
    source = ShardStream(read_webdataset(text_shards(tmp_path, shards=5, keys=6)))
    whole = run_steps(loader(source), 0, 12)  # 4 streams x 6 samples = 24 a pass; 12 steps of 6 go past it
    seen = Counter(k for _, batches, _ in whole for b in batches for k in b)
    assert len(seen) == 30 and max(seen.values()) <= 3  # every key, epochs kept apart
    ld = loader(source, workers)
    head = run_steps(ld, 0, 5)
    state = json.loads(json.dumps(ld.state()))  # as a checkpoint holds it
    resumed = loader(source, workers)
    resumed.restore(state, "ckpt")
    assert head + run_steps(resumed, 5, 12) == whole
    other = StreamLoader(source, StreamPlan(5, streams=4, seed=3, buffer=4), str, list, 3, 2)
    with pytest.raises(CheckpointError, match="same data settings"):
        other.restore(state, "ckpt")


def test_bad_keys_are_skipped_and_counted_or_stop_the_run(tmp_path):
    glob = text_shards(tmp_path, shards=2, keys=6, bad={"s0k2", "s1k4"})
    skipping = ShardStream(read_webdataset(glob, on_error="skip"))
    steps = run_steps(loader(skipping, streams=2, batch=2, accum=1), 0, 10)
    bad = [why for _, _, b in steps for _, why in b]
    assert len(bad) == 2 * 2 and all("not valid JSON" in w for w in bad)  # two epochs of 10 good + 2 bad
    assert all(len(b) == 2 for _, batches, _ in steps for b in batches)
    with pytest.raises(DataError, match="not valid JSON"):
        run_steps(loader(ShardStream(read_webdataset(glob)), streams=2, batch=2, accum=1), 0, 10)
    # failures that do not name their sample (a media decoder's) still count once per sample
    def picky(sample):
        if sample.meta["key"].endswith(("k1", "k3")):
            raise DataError("image <bytes> cannot be decoded")
        return sample.meta["key"]

    fine = ShardStream(read_webdataset(text_shards(tmp_path / "fine", 2, 6), on_error="skip"))
    plan = StreamPlan(2, streams=2, seed=2, buffer=4)
    steps = list(StreamLoader(fine, plan, picky, list, 2, 1).steps(0, 6))  # a pass and more over each stream
    keys = {key for _, _, bad in steps for key, _ in bad}
    assert len(keys) == 4 and all(k.endswith(("k1", "k3")) for k in keys)
    every = ShardStream(read_webdataset(text_shards(tmp_path / "all", 1, 3, bad={"s0k0", "s0k1", "s0k2"}),
                                        on_error="skip"))
    with pytest.raises(DataError, match="every sample of epoch"):
        run_steps(loader(every, streams=1, batch=2, accum=1), 0, 1)


def stream_args(shards, base_ckpt, out, **kw) -> list[str]:
    return overrides(Path("unused"), out, **{"init_from": base_ckpt, "name": "stream", "max_steps": 6,
                                             "save_every": 3, "keep_last": 5, "data.train": shards,
                                             "data.val": "null", "data.tasks": "null", "data.streams": 2,
                                             "data.shuffle_buffer": 16, **kw})


def train_args(shards, base_ckpt, out, **kw) -> TrainConfig:
    return TrainConfig.from_yaml(recipe("stage3_instruct"), stream_args(shards, base_ckpt, out, **kw))


def test_training_on_streamed_shards_resumes_exactly_with_workers(st_data, base_ckpt, tmp_path):
    shards = rows_to_shards(st_data / "train.jsonl", tmp_path / "shards", shards=3)
    a = train_args(shards, base_ckpt, tmp_path / "a")
    final = train(a)
    expected = load_file(str(final / "model.safetensors"))
    state = json.loads((a.run_dir / "checkpoints" / "step-00000003" / "trainer_state.json").read_text())
    assert set(state["stream"]["positions"]) == {"0", "1"}

    # The step-3 checkpoint, as a run killed after it would have left it, resumed with 2 workers.
    b = train_args(shards, base_ckpt, tmp_path / "b", resume="true", **{"data.num_workers": 2})
    (b.run_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(a.run_dir / "checkpoints" / "step-00000003", b.run_dir / "checkpoints" / "step-00000003")
    (b.run_dir / "checkpoints" / "latest").write_text("step-00000003")
    shutil.copy(a.run_dir / "metrics.jsonl", b.run_dir / "metrics.jsonl")
    got = load_file(str(train(b) / "model.safetensors"))
    assert [k for k in expected if not torch.equal(expected[k], got[k])] == []
    losses = [json.loads(x)["loss"] for x in (a.run_dir / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    assert len(losses) == 6 and losses[-1] < losses[0]


def test_streaming_needs_max_steps_and_tar_shards(st_data, base_ckpt, tmp_path):
    shards = rows_to_shards(st_data / "train.jsonl", tmp_path / "shards", shards=2)
    with pytest.raises(ConfigError, match="set max_steps"):
        train(train_args(shards, base_ckpt, tmp_path / "a", max_steps="null", epochs=1))
    with pytest.raises(ConfigError, match="streams WebDataset tar shards"):
        train(train_args(str(st_data / "train.jsonl"), base_ckpt, tmp_path / "b", **{"data.streaming": "true"}))


def test_two_processes_stream_their_own_shards_and_resume_exactly(st_data, base_ckpt, tmp_path):
    """Under DDP each process streams its own shards; the checkpoint holds every process's
    stream positions, and resuming from step 2 of 4 ends with the uninterrupted run's weights."""
    shards = rows_to_shards(st_data / "train.jsonl", tmp_path / "shards", shards=4)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "mmgpt.cli", "train", str(recipe("stage3_instruct"))]

    def launch(out, *extra):
        args = stream_args(shards, base_ckpt, out, max_steps=4, save_every=2, batch_size=2, feature_cache="false",
                           **{"data.streams": 4})
        res = subprocess.run([*torchrun, *args, *extra], cwd=ROOT, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-3000:]
        return out / "stream"

    run = launch(tmp_path / "a")
    state = json.loads((run / "checkpoints" / "step-00000002" / "trainer_state.json").read_text())
    assert set(state["stream"]["positions"]) == {"0", "1", "2", "3"}
    resumed = tmp_path / "b" / "stream" / "checkpoints"
    resumed.mkdir(parents=True)
    shutil.copytree(run / "checkpoints" / "step-00000002", resumed / "step-00000002")
    (resumed / "latest").write_text("step-00000002")
    again = launch(tmp_path / "b", "resume=true")
    a, b = (load_file(str(r / "final" / "model.safetensors")) for r in (run, again))
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
