"""DDP (2 gloo processes) matches 1 process at the same global batch; LoRA trains only LoRA and merges exactly."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from mmgpt.batching import collate
from mmgpt.model import load
from mmgpt.train import TrainConfig
from mmgpt.train.lora import merge_lora
from mmgpt.train.trainer import Trainer
from tests.mmgpt.train.conftest import ROOT, overrides, recipe

RECIPE = recipe("stage3_instruct")


def losses(run_dir):
    return [json.loads(x)["loss"] for x in (run_dir / "metrics.jsonl").read_text().splitlines() if '"train"' in x]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_process_ddp_equals_one_process(st_data, base_ckpt, tmp_path, strategy):
    """DDP, and FSDP2 (decoder layers sharded over the 2 processes), match 1 process."""
    common = dict(init_from=base_ckpt, max_steps=4, batch_size=3, feature_cache="false")
    one = overrides(st_data, tmp_path / "one", grad_accum=2, name="one", **common)
    two = overrides(st_data, tmp_path / "two", grad_accum=1, name="two", distributed=strategy, **common)
    subprocess.run([sys.executable, "-m", "mmgpt.cli", "train", str(RECIPE), *one], cwd=ROOT, check=True,
                   capture_output=True)
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "mmgpt.cli", "train", str(RECIPE), *two], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = losses(tmp_path / "one" / "one"), losses(tmp_path / "two" / "two")
    assert len(a) == len(b) == 4
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5, (a, b)
    # The checkpoint written by 2 processes loads in 1 and equals the 1-process result.
    wa = load_file(str(tmp_path / "one" / "one" / "final" / "model.safetensors"))
    wb = load_file(str(tmp_path / "two" / "two" / "final" / "model.safetensors"))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=1e-4)
    load(tmp_path / "two" / "two" / "final")


def test_fsdp_checkpoint_resumes_to_the_same_weights(st_data, base_ckpt, tmp_path):
    """An FSDP2 checkpoint (full state gathered from the shards) resumes exactly: resuming from
    step 2 of 4 ends with the weights of the uninterrupted run."""
    args = overrides(st_data, tmp_path, init_from=base_ckpt, max_steps=4, batch_size=2, feature_cache="false",
                     distributed="fsdp", save_every=2, keep_last=3, name="f")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "mmgpt.cli", "train", str(RECIPE)]
    res = subprocess.run([*torchrun, *args], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "f"
    uninterrupted = load_file(str(run / "final" / "model.safetensors"))
    assert (run / "checkpoints" / "latest").read_text() == "step-00000002"  # the last one before the end
    assert load_file(str(run / "checkpoints" / "step-00000002" / "model.safetensors")).keys() == uninterrupted.keys()
    shutil.rmtree(run / "final")
    res = subprocess.run([*torchrun, *args, "resume=true"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "(step 2)" in res.stderr  # it did resume (a fresh run would also end the same)
    resumed = load_file(str(run / "final" / "model.safetensors"))
    assert resumed.keys() == uninterrupted.keys()
    for k in resumed:
        assert torch.equal(resumed[k], uninterrupted[k]), k


def test_lora_trains_only_lora_and_merge_is_exact(st_data, base_ckpt, tmp_path):
    cfg = TrainConfig.from_yaml(RECIPE, overrides(st_data, tmp_path, init_from=base_ckpt, max_steps=3,
                                                  **{"lora.enabled": "true", "lora.r": 4,
                                                     "trainable.adapters": "false", "optim.lr": 0.01}))
    trainer = Trainer(cfg)
    model = trainer.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    for step in range(3):
        for b in trainer.micro_batches(step):
            out = trainer.loss(b)
            (out.loss_sum / out.weight).backward()
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("lora_" in k for k in changed), sorted(changed)[:5]

    model.eval()
    msgs = [{"role": "user", "content": [{"type": "text", "text": "How many beeps?"}]}]
    batch = collate([model.processor(msgs)], model.pad_token_id)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
    with torch.no_grad():
        unmerged = model(**inputs).logits
        merge_lora(model)
        merged = model(**inputs).logits
    assert not hasattr(model.decoder, "peft_config")
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-4)
    base = load(base_ckpt).eval()
    with torch.no_grad():
        assert not torch.allclose(base(**inputs).logits, merged, atol=1e-4)


@pytest.mark.parametrize("batching", ["pad", "group"])
def test_other_batching_modes_run(st_data, base_ckpt, tmp_path, batching):
    from mmgpt.train import train

    cfg = TrainConfig.from_yaml(RECIPE, overrides(st_data, tmp_path, init_from=base_ckpt,
                                                  **{"data.batching": batching}))
    train(cfg)
    assert len(losses(cfg.run_dir)) == 2


def test_sample_loss_weighting_is_exact_under_grad_accum(st_data, base_ckpt, tmp_path):
    """data.loss_weighting=sample normalises by the global weight: 2 accumulated micro-batches
    of 3 give the losses of one batch of 6; and the losses differ from token weighting."""
    from mmgpt.train import train

    def run(name, weighting, **kw):
        cfg = TrainConfig.from_yaml(RECIPE, overrides(st_data, tmp_path, init_from=base_ckpt, max_steps=3, name=name,
                                                      feature_cache="false", **{"data.loss_weighting": weighting},
                                                      **kw))
        train(cfg)
        return losses(cfg.run_dir)

    accum = run("accum", "sample", batch_size=3, grad_accum=2)
    whole = run("whole", "sample", batch_size=6, grad_accum=1)
    token = run("token", "token", batch_size=6, grad_accum=1)
    assert max(abs(a - b) for a, b in zip(accum, whole)) < 1e-5, (accum, whole)
    assert abs(token[0] - whole[0]) > 1e-3, (token, whole)
