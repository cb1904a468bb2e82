"""``mmgpt eval`` on a saved tiny checkpoint: prints the tables and writes next to the run."""

from __future__ import annotations

import contextlib
import json

from mmgpt.cli import main
from mmgpt.eval.cli import default_out


def test_mmgpt_eval_prints_tables_and_writes_reports(tiny_model, tmp_path, shapestones_test, capsys):
    ckpt = tmp_path / "runs" / "tiny" / "final"
    tiny_model.save_pretrained(ckpt)
    rc = main(["eval", str(ckpt), "--data", str(shapestones_test), "--shots", "0,1", "--limit", "1",
               "--tasks", "image_qa,audio_caption", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "| image_qa | 0 | 1 |" in out and "| audio_caption | 1 | 1 |" in out
    assert "Per-attribute accuracy" in out
    eval_dir = tmp_path / "runs" / "tiny" / "eval"
    assert default_out(ckpt) == eval_dir
    assert {p.name for p in eval_dir.iterdir()} == {"image_qa.json", "audio_caption.json", "summary.json",
                                                   "report.md", "attributes.png", "shots.png"}
    assert json.loads((eval_dir / "summary.json").read_text())["settings"]["shots"] == [0, 1]


def test_mmgpt_eval_reports_bad_input(tmp_path, capsys):
    rc = main(["eval", str(tmp_path / "missing"), "--data", str(tmp_path / "none.jsonl")])
    assert rc == 1
    assert "no model at" in capsys.readouterr().err


def test_mmgpt_eval_runs_under_the_chosen_precision(tiny_model, tmp_path, shapestones_test, monkeypatch):
    import torch

    import mmgpt.eval.harness as harness

    seen = []

    def spy(*args, **kwargs):  # the forward passes' autocast, as evaluate would run them
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        raise SystemExit(0)

    monkeypatch.setattr(harness, "evaluate", spy)
    ckpt = tmp_path / "m"
    tiny_model.save_pretrained(ckpt)
    for precision in ("bf16", "fp32"):
        with contextlib.suppress(SystemExit):  # the spy stops the run once it has looked
            main(["eval", str(ckpt), "--data", str(shapestones_test), "--precision", precision])
    assert seen == [(True, torch.bfloat16), (False, seen[1][1])]
