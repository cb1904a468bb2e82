"""Fault injection: kills at random moments, damaged checkpoint files, a full disk, non-finite
losses, resumes that would silently change the run. Each ends bitwise where an uninterrupted
run ends, or in a clear ``mmgpt.errors`` error with the last good checkpoint intact."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mmgpt.errors import CheckpointError, ConfigError, TrainingError
from mmgpt.safe_io import MANIFEST, write_manifest
from mmgpt.train import TrainConfig, train
from mmgpt.train.resume import FILES, latest_checkpoint, load_training_checkpoint
from mmgpt.train.trainer import Trainer
from tests.mmgpt.train.conftest import ROOT, overrides, recipe

RECIPE = recipe("stage3_instruct")
KILLS, STEPS = 20, 80


def args(st_data, base_ckpt, out, **kw) -> list[str]:
    return overrides(st_data, out, **{"init_from": base_ckpt, "name": "f", "max_steps": STEPS, "save_every": 1,
                                      "keep_last": 2, "data.val": "null", "feature_cache": "false", **kw})


def weights(final: Path) -> dict[str, torch.Tensor]:
    return load_file(str(final / "model.safetensors"))


def train_steps(run: Path) -> list[int]:
    """Steps logged so far; read while the trainer appends, so a line still being written is skipped."""
    steps = []
    for x in (run / "metrics.jsonl").read_text().splitlines():
        if '"train"' in x and x.endswith("}"):
            steps.append(json.loads(x)["step"])
    return steps


@pytest.fixture(scope="module")
def reference(st_data, base_ckpt, tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("reference")
    return weights(train(TrainConfig.from_yaml(RECIPE, args(st_data, base_ckpt, out))))


def test_twenty_kills_at_random_moments_then_resume_end_bitwise_equal(st_data, base_ckpt, tmp_path, reference):
    """Each launch is killed with SIGKILL at a random moment once it is training (a checkpoint is
    written every step, so many kills land inside a write); the next launch resumes."""
    rng = random.Random(0)
    out, run = tmp_path / "k", tmp_path / "k" / "f"
    metrics = run / "metrics.jsonl"
    kills = mid_write = 0
    while kills < KILLS:
        resume = latest_checkpoint(run / "checkpoints") is not None
        cmd = [sys.executable, "-m", "mmgpt.cli", "train", str(RECIPE), *args(st_data, base_ckpt, out),
               f"resume={'true' if resume else 'false'}"]
        seen = len(train_steps(run)) if metrics.exists() else 0
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:  # wait until it trains
            if metrics.exists() and len(train_steps(run)) > (seen if resume else 0):
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.12))  # 0-3 steps (~45 ms each with its checkpoint write)
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read().decode()[-3000:]
            pytest.fail(f"the run finished after {kills} kills; raise STEPS")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        mid_write += bool(list((run / "checkpoints").glob(".step-*.tmp-*")))
    print(f"{kills} kills, {mid_write} inside a checkpoint write")
    final = train(TrainConfig.from_yaml(RECIPE, [*args(st_data, base_ckpt, out), "resume=true"]))
    got = weights(final)
    assert [k for k in reference if not torch.equal(reference[k], got[k])] == []
    assert train_steps(run) == list(range(1, STEPS + 1))  # no step lost or repeated in the metrics
    assert not list((run / "checkpoints").glob(".*")) and not list(run.glob(".*"))  # temporaries cleaned


def resumable(st_data, base_ckpt, out, steps=4) -> Path:
    """A finished 4-step run (checkpoints kept at steps 2 and 3); returns the run folder."""
    train(TrainConfig.from_yaml(RECIPE, args(st_data, base_ckpt, out, max_steps=steps)))
    return out / "f"


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def swap_shape(path: Path) -> None:
    """Every tensor one row/element shorter, the manifest rewritten: only the shape checks can tell."""
    if path.suffix == ".safetensors":
        tensors = {k: (v[:-1] if v.dim() and v.shape[0] > 1 else v) for k, v in load_file(str(path)).items()}
        save_file(tensors, str(path))
    else:
        state = json.loads(path.read_text())
        state["optimizer"]["param_groups"] = state["optimizer"]["param_groups"][:1] * 3
        path.write_text(json.dumps(state))
    (path.parent / MANIFEST).unlink()
    write_manifest(path.parent)


DAMAGE = {"truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "bit-flipped": flip,
          "deleted": lambda p: p.unlink(), "swapped for another shape": swap_shape}


def test_every_damaged_checkpoint_file_is_a_checkpoint_error(st_data, base_ckpt, tmp_path):
    run = resumable(st_data, base_ckpt, tmp_path)
    trainer = Trainer(TrainConfig.from_yaml(RECIPE, args(st_data, base_ckpt, tmp_path / "other", max_steps=4)))
    good = latest_checkpoint(run / "checkpoints")
    tried = []
    for name in (*FILES, MANIFEST):
        for how, damage in DAMAGE.items():
            if name == MANIFEST and how == "swapped for another shape":
                continue
            bad = tmp_path / "bad"
            shutil.rmtree(bad, ignore_errors=True)
            shutil.copytree(good, bad)
            damage(bad / name)
            with pytest.raises(CheckpointError):
                load_training_checkpoint(bad, trainer.model, trainer.optimizer, trainer.scheduler)
            tried.append((name, how))
    for name, how in DAMAGE.items():  # and the final model folder
        bad = tmp_path / "badfinal"
        shutil.rmtree(bad, ignore_errors=True)
        shutil.copytree(run / "final", bad)
        for file in ("config.json", "model.safetensors", "tokenizer.json"):
            if name == "swapped for another shape" and file != "model.safetensors":
                continue
            shutil.rmtree(bad)
            shutil.copytree(run / "final", bad)
            how(bad / file)
            from mmgpt.model import load

            with pytest.raises(CheckpointError):
                load(bad)
            tried.append((file, name))
    assert len(tried) == 5 * 4 - 1 + 3 * 3 + 1
    load_training_checkpoint(good, trainer.model, trainer.optimizer, trainer.scheduler)  # the original is fine


def test_a_full_disk_during_a_save_is_an_error_and_the_last_checkpoint_still_loads(st_data, base_ckpt, tmp_path,
                                                                                    monkeypatch):
    import mmgpt.train.resume as resume

    real = resume.save_file
    calls = {"n": 0}

    def full_disk(tensors, path, *a, **kw):
        calls["n"] += 1
        if calls["n"] > 4:  # the first two checkpoints (2 files each through save_file) fit; the third does not
            Path(path).write_bytes(b"\0" * 100)  # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real(tensors, path, *a, **kw)

    monkeypatch.setattr(resume, "save_file", full_disk)
    cfg = TrainConfig.from_yaml(RECIPE, args(st_data, base_ckpt, tmp_path, max_steps=4))
    with pytest.raises(CheckpointError, match="No space left on device"):
        train(cfg)
    ckpts = cfg.run_dir / "checkpoints"
    assert latest_checkpoint(ckpts).name == "step-00000002"
    assert not list(ckpts.glob(".*"))  # the half-written one is gone
    monkeypatch.setattr(resume, "save_file", real)
    final = train(TrainConfig.from_yaml(RECIPE, [*args(st_data, base_ckpt, tmp_path, max_steps=4), "resume=true"]))
    assert weights(final).keys()


def test_resume_never_guesses(st_data, base_ckpt, tmp_path):
    def cfg(*extra, **kw):
        return TrainConfig.from_yaml(RECIPE, [*args(st_data, base_ckpt, tmp_path, max_steps=4, **kw), *extra])

    with pytest.raises(CheckpointError, match=r"no checkpoint in .* to resume from"):
        Trainer(cfg("resume=true"))
    run = resumable(st_data, base_ckpt, tmp_path)
    before = (run / "metrics.jsonl").read_text()
    ckpts = run / "checkpoints"
    # a changed setting that moves the samples or the model is refused, with the change named
    with pytest.raises(ConfigError, match=r"batch_size: 4 -> 2.*seed: 0 -> 1|seed: 0 -> 1"):
        Trainer(cfg("resume=true", batch_size=2, seed=1))
    Trainer(cfg("resume=force", seed=1))  # accepted when forced
    Trainer(cfg("resume=true", log_every=5, **{"data.num_workers": 1}))  # run-only settings may change
    # metrics are rotated, never truncated
    assert (run / "metrics.jsonl.1").read_text() == before
    # a dangling pointer is an error naming what is there
    (ckpts / "latest").write_text("step-00000099")
    with pytest.raises(CheckpointError, match=r"names 'step-00000099'.*found: \['step-00000002', 'step-00000003'\]"):
        Trainer(cfg("resume=true"))
    # no pointer at all (a kill before its first write): the newest complete checkpoint
    (ckpts / "latest").unlink()
    assert latest_checkpoint(ckpts).name == "step-00000003"
    # temporaries of dead writers are removed at start; a final/ replaced mid-save is put back
    (ckpts / ".step-00000005.tmp-999999999-deadbeef").mkdir()
    (run / "final").rename(run / ".final.old-0badf00d")
    Trainer(cfg("resume=true"))
    assert not list(ckpts.glob(".*")) and (run / "final" / "model.safetensors").is_file()


def test_non_finite_steps_are_skipped_then_stop_the_run(st_data, base_ckpt, tmp_path, monkeypatch):
    poisoned = {2, 3}

    def loss(self, batch, real=Trainer.loss):
        out = real(self, batch)
        if self.scheduler.last_epoch + 1 in poisoned:
            out.loss_sum = out.loss_sum * float("nan")
        return out

    monkeypatch.setattr(Trainer, "loss", loss)
    cfg = TrainConfig.from_yaml(RECIPE, args(st_data, base_ckpt, tmp_path / "a", max_steps=5, keep_last=10))
    train(cfg)
    records = [json.loads(x) for x in (cfg.run_dir / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    assert [r["step"] for r in records if r.get("skipped")] == [2, 3]
    a = load_file(str(cfg.run_dir / "checkpoints" / "step-00000001" / "model.safetensors"))
    b = load_file(str(cfg.run_dir / "checkpoints" / "step-00000003" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the skipped updates changed nothing

    poisoned.update(range(2, 20))
    cfg = TrainConfig.from_yaml(RECIPE, args(st_data, base_ckpt, tmp_path / "b", max_steps=8,
                                             **{"optim.max_bad_steps": 2}))
    with pytest.raises(TrainingError, match=r"3 steps had a non-finite loss.*last checkpoint: .*step-00000003"):
        train(cfg)
    fresh = Trainer(TrainConfig.from_yaml(RECIPE, args(st_data, base_ckpt, tmp_path / "c", max_steps=8)))
    state = load_training_checkpoint(latest_checkpoint(cfg.run_dir / "checkpoints"), fresh.model, fresh.optimizer,
                                     fresh.scheduler)
    assert state["step"] == 3 and state["bad_steps"] == 2  # the last checkpoint before the stop, intact


def test_lora_without_merge_saves_the_base_and_a_peft_adapter_that_reproduce_the_merged_model(st_data, base_ckpt,
                                                                                              tmp_path):
    from peft import PeftModel

    from mmgpt.model import load

    lora = {"lora.enabled": "true", "lora.r": 4, "optim.lr": 0.01, "save_every": 0}
    merged = train(TrainConfig.from_yaml(RECIPE, args(st_data, base_ckpt, tmp_path / "m", max_steps=3, **lora)))
    kept = TrainConfig.from_yaml(RECIPE, args(st_data, base_ckpt, tmp_path / "k", max_steps=3,
                                              **{**lora, "lora.merge_on_save": "false"}))
    base = train(kept)
    adapter = kept.run_dir / "lora_adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    a, b = load(merged), load(base)
    b.decoder = PeftModel.from_pretrained(b.decoder, str(adapter)).merge_and_unload()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        la = a.decoder(input_ids=ids).logits
        lb = b.decoder(input_ids=ids).logits
    torch.testing.assert_close(la, lb, atol=1e-5, rtol=1e-5)
    assert not torch.equal(load(base).decoder(input_ids=ids).logits, la)  # the adapter is what differs


def test_cli_prints_one_line_for_any_error_and_the_traceback_with_v(tmp_path, capsys, monkeypatch):
    import types

    import mmgpt.cli as cli

    bug = types.SimpleNamespace(add_cli=lambda p: p.set_defaults(run=lambda a: {}["missing"]))
    monkeypatch.setitem(sys.modules, "mmgpt_test_bug", bug)
    monkeypatch.setitem(cli.COMMANDS, "bug", ("a command with a bug", "mmgpt_test_bug"))
    assert cli.main(["bug"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mmgpt bug: internal error: KeyError: 'missing'" in err and "Traceback" not in err
    assert cli.main(["-v", "bug"]) == 2
    assert "Traceback" in capsys.readouterr().err
    from mmgpt.model import MMGPT
    from mmgpt.train.config import OptimConfig
    from mmgpt.train.optim import build_optimizer

    with pytest.raises(ConfigError, match=r"optim\.lr_per_part\.decodr: names no parameter"):
        build_optimizer(MMGPT.from_config("tiny"), OptimConfig(lr_per_part={"decodr": 1e-4}))
