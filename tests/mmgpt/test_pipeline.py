"""``mmgpt pipeline``: the shipped captioner plans run end to end on files in the COCO and Clotho
layouts (built here), two steps a stage; the quickstart runs the same stage runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmgpt.cli import main
from mmgpt.datasets.shapestones import write_clotho, write_coco
from mmgpt.pipeline import load_plan

ROOT = Path(__file__).resolve().parents[2]
PLANS = ROOT / "recipes" / "pipelines"


def files_args(split_info: dict, kind: str) -> list[str]:
    key = "annotations" if kind == "coco" else "captions"
    names = {"coco": ("train", "val", "test"), "clotho": ("development", "validation", "evaluation")}[kind]
    train, val, test = (split_info[n] for n in names)
    return [f"files.train={train[key]}", f"files.media_folder={train['media_folder']}",
            f"files.val={val[key]}", f"files.val_media_folder={val['media_folder']}",
            f"files.test={test[key]}", f"files.test_media_folder={test['media_folder']}"]


@pytest.mark.parametrize(("plan", "kind", "task"), [("image_captioner", "coco", "image_caption"),
                                                    ("audio_captioner", "clotho", "audio_caption")])
def test_captioner_plan_runs_on_its_layout(tmp_path, monkeypatch, plan, kind, task):
    if kind == "coco":
        data = write_coco(tmp_path / "d", {"train": 70, "val": 8, "test": 6}, image_size=32, progress=False)
    else:
        data = write_clotho(tmp_path / "d", {"development": 14, "validation": 4, "evaluation": 6}, progress=False)
    path = PLANS / f"{plan}.yaml"
    assert path.read_text().splitlines()[0] == f"# mmgpt pipeline recipes/pipelines/{plan}.yaml"
    monkeypatch.chdir(tmp_path)
    args = ["pipeline", str(path), *files_args(data, kind), "model=tiny", "steps_per_stage=2", "eval.limit=4",
            "out_dir=runs/p", "threads=1"]  # the recipes' batches of 32-64 need 64+ training rows
    assert main(args) == 0
    summary = json.loads((tmp_path / "runs" / "p" / f"{plan}.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == ["text", "contrastive", "align", "instruct"]
    assert all(s["steps"] == 2 for s in summary["stages"])
    assert f"{task}/exact_match" in summary["eval"] and (tmp_path / "runs" / "p" / "final" / "model.safetensors").is_file()
    report = json.loads((tmp_path / "runs" / "p" / "eval" / f"{task}.json").read_text())
    assert report  # the held-out captions were generated and scored


def test_plans_name_files_or_shapestones_not_both_required(tmp_path):
    plan = load_plan(PLANS / "image_captioner.yaml")
    assert plan.files is not None and plan.files.media_folder.endswith("train")
    quick = load_plan("quickstart")
    assert quick.files is None and quick.data.train > 0 and quick.out_dir == "runs/quickstart"


def test_one_seed_and_precision_reach_the_data_and_every_stage():
    from mmgpt.pipeline import stage_overrides
    from mmgpt.train import TrainConfig

    plan = load_plan("quickstart", ["seed=7", "precision=fp32"])
    assert plan.data.seed == 7
    for i, stage in enumerate(plan.stages):
        cfg = TrainConfig.from_yaml(stage.recipe, stage_overrides(plan, stage, Path("d"), Path("prev") if i else None))
        assert (cfg.seed, cfg.precision) == (7, "fp32")
    default = load_plan("quickstart")
    cfg = TrainConfig.from_yaml(default.stages[0].recipe, stage_overrides(default, default.stages[0], Path("d"), None))
    assert (default.data.seed, cfg.seed, cfg.precision) == (0, 0, "auto")
    from mmgpt.errors import ConfigError

    with pytest.raises(ConfigError, match="precision"):
        load_plan("quickstart", ["precision=fp16"])


def test_quickstart_seed_flag_sets_the_plan_seed(monkeypatch):
    import mmgpt.quickstart as qs

    seen = {}
    monkeypatch.setattr(qs, "quickstart", lambda plan: seen.setdefault("plan", plan))
    assert main(["quickstart", "--seed", "3", "data.train=10"]) == 0
    assert (seen["plan"].seed, seen["plan"].data.seed, seen["plan"].data.train) == (3, 3, 10)


def test_the_full_quickstart_plan_is_the_quickstart_with_a_longer_stage_3():
    from mmgpt.errors import ConfigError
    from mmgpt.pipeline import stage_overrides

    quick, full = load_plan("quickstart"), load_plan("quickstart_full")
    assert (full.out_dir, full.data) == ("runs/quickstart_full", quick.data)  # shares the generated data
    for q, f in zip(quick.stages, full.stages, strict=True):
        a = stage_overrides(quick, q, Path("d"), Path("p"))
        b = stage_overrides(full, f, Path("d"), Path("p"))
        extra = ["max_steps=2000"] if q.recipe == "stage3_instruct" else []
        assert b[1:] == a[1:] + extra and b[0] == "out_dir=runs/quickstart_full"
    # max_steps.<recipe> on the command line; steps_per_stage (smoke runs) still wins; typos are refused
    plan = load_plan("quickstart", ["max_steps.stage1_align=7", "steps_per_stage=2"])
    assert stage_overrides(plan, plan.stages[2], Path("d"), Path("p"))[-1] == "max_steps=2"
    plan.steps_per_stage = None
    assert stage_overrides(plan, plan.stages[2], Path("d"), Path("p"))[-1] == "max_steps=7"
    with pytest.raises(ConfigError, match="stage3_instrct"):
        load_plan("quickstart", ["max_steps.stage3_instrct=5"])
