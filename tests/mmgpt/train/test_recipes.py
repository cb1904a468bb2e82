"""Every stage recipe in recipes/configs/ loads and runs two steps on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmgpt.errors import ConfigError
from mmgpt.model import load
from mmgpt.train import TrainConfig, train
from tests.mmgpt.train.conftest import ROOT, TINY, overrides

RECIPES = sorted((ROOT / "recipes" / "configs").glob("*.yaml"))


def test_there_are_recipes_for_every_stage():
    stages = {TrainConfig.from_yaml(r, [f"data.train={r}"]).stage for r in RECIPES}
    assert stages == {"text", "contrastive", "align", "interleaved", "instruct"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_runs_two_steps(recipe, st_data, base_ckpt, tmp_path):
    first_line = recipe.read_text().splitlines()[0]
    assert first_line.startswith("# mmgpt train recipes/configs/"), "each recipe starts with its command"
    cfg = TrainConfig.from_yaml(recipe, overrides(st_data, tmp_path))
    if cfg.init_from:
        cfg = TrainConfig.from_yaml(recipe, overrides(st_data, tmp_path, init_from=base_ckpt))
    else:
        cfg = TrainConfig.from_yaml(recipe, overrides(st_data, tmp_path, model=TINY))
    final = train(cfg)
    model = load(final)
    assert model.config.decoder.hidden_size == 64
    records = [line for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert len(records) == 2
    assert (cfg.run_dir / "loss.png").stat().st_size > 1000
    assert (cfg.run_dir / "summary.json").is_file()


def test_stage1_step_changes_only_adapters(st_data, base_ckpt, tmp_path):
    before = load_file(str(Path(base_ckpt) / "model.safetensors"))
    cfg = TrainConfig.from_yaml(ROOT / "recipes/configs/stage1_align.yaml",
                                overrides(st_data, tmp_path, init_from=base_ckpt, max_steps=1))
    after = load_file(str(train(cfg) / "model.safetensors"))
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "the step changed nothing"
    assert all(k.startswith("adapters.") for k in changed), sorted(changed)[:5]
    assert {k.split(".")[1] for k in changed} == {"image", "audio"}


def test_bad_recipe_values_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"optim\.lrr"):
        TrainConfig.from_yaml(ROOT / "recipes/configs/stage1_align.yaml", ["optim.lrr=1"])
    with pytest.raises(ConfigError, match=r"data\.train is required"):
        TrainConfig.from_yaml(ROOT / "recipes/configs/stage1_align.yaml", ["data.train="])


@pytest.mark.parametrize(("bf16_rate", "expected"), [(50e9, None), (400e9, torch.bfloat16)])
def test_trainer_precision_auto_follows_the_probe(st_data, base_ckpt, tmp_path, monkeypatch, bf16_rate, expected):
    from mmgpt import precision as P
    from mmgpt.train.trainer import Trainer

    monkeypatch.setenv("MMGPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(P, "_MEMO", {})
    seen = []

    def probe(device, dtype, tokens, width, ffn, repeats=3):
        seen.append((width, ffn))
        return bf16_rate if dtype == torch.bfloat16 else 100e9

    monkeypatch.setattr(P, "probe_rate", probe)
    cfg = TrainConfig.from_yaml(ROOT / "recipes/configs/stage1_align.yaml",
                                overrides(st_data, tmp_path, init_from=base_ckpt, precision="auto"))
    trainer = Trainer(cfg)
    assert trainer.amp is expected
    assert set(seen) == {(64, 128)}  # the tiny decoder's hidden and MLP widths
