"""Every shipped stage recipe (mmgpt/recipes/) and every user recipe in recipes/ loads and runs two
steps on the tiny model; shipped names resolve from any folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmgpt import resources
from mmgpt.errors import ConfigError, InvalidMediaError
from mmgpt.model import load
from mmgpt.train import TrainConfig, train
from tests.mmgpt.train.conftest import ROOT, TINY, overrides, recipe

SHIPPED = resources.shipped("recipe")
USER = sorted((ROOT / "recipes").glob("*.yaml"))


def test_there_are_recipes_for_every_stage():
    stages = {TrainConfig.from_yaml(r, ["data.train=x"]).stage for r in SHIPPED}
    assert stages == {"text", "contrastive", "align", "interleaved", "instruct"}


@pytest.mark.parametrize("name", [*SHIPPED, *USER], ids=lambda p: Path(p).stem)
def test_recipe_runs_two_steps(name, st_data, base_ckpt, tmp_path):
    first_line = recipe(name).read_text().splitlines()[0] if name in SHIPPED else name.read_text().splitlines()[0]
    command = f"# mmgpt train {name}" if name in SHIPPED else f"# mmgpt train recipes/{name.name}"
    assert first_line.startswith(command), "each recipe starts with the command that runs it"
    cfg = TrainConfig.from_yaml(name, overrides(st_data, tmp_path))
    if cfg.init_from:
        cfg = TrainConfig.from_yaml(name, overrides(st_data, tmp_path, init_from=base_ckpt))
    else:
        cfg = TrainConfig.from_yaml(name, overrides(st_data, tmp_path, model=TINY))
    final = train(cfg)
    model = load(final)
    assert model.config.decoder.hidden_size == 64
    records = [line for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert len(records) == 2
    assert (cfg.run_dir / "loss.png").stat().st_size > 1000
    assert (cfg.run_dir / "summary.json").is_file()


def test_stage1_step_changes_only_adapters(st_data, base_ckpt, tmp_path):
    before = load_file(str(Path(base_ckpt) / "model.safetensors"))
    cfg = TrainConfig.from_yaml(recipe("stage1_align"),
                                overrides(st_data, tmp_path, init_from=base_ckpt, max_steps=1))
    after = load_file(str(train(cfg) / "model.safetensors"))
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "the step changed nothing"
    assert all(k.startswith("adapters.") for k in changed), sorted(changed)[:5]
    assert {k.split(".")[1] for k in changed} == {"image", "audio"}


def test_bad_recipe_values_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"optim\.lrr"):
        TrainConfig.from_yaml(recipe("stage1_align"), ["optim.lrr=1"])
    with pytest.raises(ConfigError, match=r"data\.train is required"):
        TrainConfig.from_yaml(recipe("stage1_align"), ["data.train="])


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
    cfg = TrainConfig.from_yaml(recipe("stage1_align"),
                                overrides(st_data, tmp_path, init_from=base_ckpt, precision="auto"))
    trainer = Trainer(cfg)
    assert trainer.amp is expected
    assert set(seen) == {(64, 128)}  # the tiny decoder's hidden and MLP widths


def test_shipped_names_resolve_from_any_folder_and_paths_still_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig.from_yaml("stage1_align", ["data.train=x"])
    assert cfg.stage == "align"
    assert TrainConfig.from_yaml(str(recipe("stage1_align")), ["data.train=x"]) == cfg
    (tmp_path / "mine.yaml").write_text("base: stage3_instruct\nlora: {enabled: true, r: 4}\n")
    mine = TrainConfig.from_yaml("mine.yaml", ["data.train=x"])
    assert mine.stage == "instruct" and mine.lora.enabled and mine.lora.r == 4
    with pytest.raises(ConfigError, match=r"recipe 'stage9' not found.*stage1_align"):
        TrainConfig.from_yaml("stage9", ["data.train=x"])
    from mmgpt.config import MMGPTConfig

    assert MMGPTConfig.from_yaml("tiny").decoder.hidden_size == 64
    with pytest.raises(ConfigError, match=r"preset 'huge' not found.*quickstart, small, tiny"):
        MMGPTConfig.from_yaml("huge")


def test_train_print_shows_the_resolved_config_that_loads_back(tmp_path, capsys):
    from mmgpt.cli import main

    assert main(["train", "stage3_instruct", "data.train=x", "lora.r=4", "--print"]) == 0
    (tmp_path / "copy.yaml").write_text(capsys.readouterr().out)
    assert TrainConfig.from_yaml(tmp_path / "copy.yaml") == TrainConfig.from_yaml("stage3_instruct",
                                                                                  ["data.train=x", "lora.r=4"])


def test_trains_on_a_coco_layout_through_its_media_folder(base_ckpt, tmp_path):
    """COCO as it ships: captions JSON in annotations/, images in train/ and val/; no copying."""
    from mmgpt.datasets.shapestones import write_coco

    coco = write_coco(tmp_path / "coco", {"train": 12, "val": 4}, progress=False)
    cfg = TrainConfig.from_yaml("stage1_align", [
        f"data.train={coco['train']['annotations']}", f"data.media_folder={coco['train']['media_folder']}",
        f"data.val={coco['val']['annotations']}", f"data.val_media_folder={coco['val']['media_folder']}",
        "data.tasks=null", f"init_from={base_ckpt}", f"out_dir={tmp_path}", "batch_size=4", "max_steps=2",
        "progress=false", "precision=fp32"])
    final = train(cfg)
    summary = __import__("json").loads((cfg.run_dir / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["val_loss"] is not None and (final / "model.safetensors").is_file()
    bad = TrainConfig.from_yaml("stage1_align", [
        f"data.train={coco['train']['annotations']}", f"data.media_folder={tmp_path / 'coco'}", "data.tasks=null", "data.val=null",
        f"init_from={base_ckpt}", f"out_dir={tmp_path}", "max_steps=1", "batch_size=4", "progress=false",
        "name=wrong_folder"])
    with pytest.raises(InvalidMediaError, match=r"image file .*/coco/0000[0-9][0-9]\.png not found"):  # the images are not where the folder says
        train(bad)
