"""``mmgpt bench``: the quick run's report structure, equal sizes of the A/B pair, the markdown section.

Benchmarks are not tests: nothing here asserts a speed, only that the bench measures what it
says it measures (same parameters and tokens on both sides, every target reported).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from mmgpt import cli
from mmgpt.bench import report as R
from mmgpt.bench.cli import GROUPS, PLAN, select
from mmgpt.bench.peers import ab_batch, build_pair, num_params

COMPILED = set(GROUPS["compiled"])  # compiling takes ~30 s a side on a CPU: in the slow test below
COMPILED_TARGETS = {"train_compiled", "decode_b1_compiled", "decode_b8_vs_b1_compiled"}


def run_quick(out, only: list[str]):
    md = out / "BENCH.md"
    md.write_text("# Benchmarks\n\n## quickstart\n\nkept\n")
    code = cli.main(["bench", "--quick", "--threads", "1", "--out", str(out), "--markdown", str(md),
                     "--only", ",".join(only)])
    return code, json.loads((out / "bench.json").read_text()), md.read_text()


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    return run_quick(tmp_path_factory.mktemp("bench"), [g for g in GROUPS if g != "compiled"])


def test_quick_run_reports_every_measurement(quick_report):
    code, rep, _ = quick_report
    assert code == 0, rep["errors"]
    assert set(rep["results"]) == set(PLAN) - COMPILED
    ids = {r["id"] for r in rep["rows"] if r["id"]}
    assert ids == set(R.TARGETS) - COMPILED_TARGETS  # every target has a row with a verdict
    for r in rep["rows"]:
        assert math.isfinite(r["ratio"]) and r["ratio"] > 0, r
        if r["id"]:
            assert r["met"] == (r["ratio"] >= r["minimum"])
    for res in rep["results"].values():
        for side in res["sides"].values():
            assert side["runs"]["seconds"] and all(t > 0 for t in side["runs"]["seconds"])
            assert side["peak_mem_mb"] > 0 and "alone" in side["mem_scope"]
    assert rep["results"]["mfu"]["peaks"]["bf16"]["peak"] > 0
    assert rep["env"]["command"].startswith("mmgpt bench --quick")


def test_both_models_saw_the_same_parameters_and_tokens(quick_report):
    _, rep, _ = quick_report
    checks = {c["id"]: c for c in rep["equal_size"]}
    assert set(checks) == {"train_fp32", "train_bf16", "generate_b1", "generate_b8"}
    for c in checks.values():
        assert c["ok"] and c["params_rel_diff"] <= 0.01
        assert c["tokens_mmgpt"] == c["tokens_llava"] > 0
    for rid in ("train_fp32", "train_bf16"):
        sides = rep["results"][rid]["sides"]
        a, b = sides["mmgpt"]["info"], sides["llava"]["info"]
        assert a["image_tokens"] == b["image_tokens"] > 0
        # same data, same init scale: first losses agree to a few percent (both ~ln V)
        assert abs(sides["mmgpt"]["median"]["loss"] - sides["llava"]["median"]["loss"]) < 0.5


def test_markdown_section_written_and_other_sections_kept(quick_report):
    _, _, md = quick_report
    assert "## quickstart\n\nkept" in md
    assert md.count(R.SECTION) == 1
    assert "| measurement | A | B | ratio | target |" in md
    assert md.count("**met**") + md.count("**MISSED**") == len(R.TARGETS) - len(COMPILED_TARGETS)


def test_write_section_replaces_only_its_own_section(tmp_path):
    path = tmp_path / "B.md"
    path.write_text("# B\n\n## mmgpt bench\n\nold\n\n## quickstart\n\nq\n")
    R.write_section(path, "## mmgpt bench\n\nnew\n")
    text = path.read_text()
    assert "old" not in text and "new" in text and "## quickstart\n\nq" in text
    assert text.index("new") < text.index("## quickstart")


def test_select_groups_and_unknown_names():
    assert select(None) == list(PLAN)
    assert select("train,mfu") == [*GROUPS["train"], "mfu"]
    with pytest.raises(ValueError, match="unknown measurement"):
        select("trian")


def test_pair_is_structurally_equal_and_reads_the_same_batch():
    mm, llava = build_pair("tiny")
    assert abs(num_params(mm) - num_params(llava)) / num_params(mm) < 0.01
    batch = ab_batch(mm, mm.tokenizer, rows=2, length=40)
    n_img = (mm.config.vision.img_size // mm.config.vision.patch_size) ** 2
    assert int((batch.input_ids == mm.media_token_ids["image"]).sum()) == 2 * n_img == batch.image_tokens
    with torch.no_grad():
        a = mm(input_ids=batch.input_ids, attention_mask=batch.attention_mask, media=batch.media())
        b = llava(input_ids=batch.input_ids, attention_mask=batch.attention_mask, pixel_values=batch.pixel_values)
    assert a.logits.shape == b.logits.shape == (2, 40, len(mm.tokenizer))


@pytest.mark.slow
def test_quick_compiled_rows(tmp_path):
    code, rep, _ = run_quick(tmp_path, ["compiled"])
    assert code == 0, rep["errors"]
    assert set(rep["results"]) == COMPILED
    assert {r["id"] for r in rep["rows"] if r["id"]} == COMPILED_TARGETS
    assert rep["results"]["train_compiled"]["sides"]["mmgpt"]["info"]["compiled"] is True
    assert rep["results"]["generate_b1_compiled"]["sides"]["llava"]["info"]["compiled"] is False


def test_a_relative_out_folder_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --out (runs/bench) is relative: the scale rows' files must resolve
    code = cli.main(["bench", "--quick", "--threads", "1", "--only", "scale", "--out", "rel/bench", "--markdown", "none"])
    rep = json.loads((tmp_path / "rel" / "bench" / "bench.json").read_text())
    assert code == 0 and not rep["errors"], rep["errors"]
    assert "scale" in rep["results"]


def test_scale_captions_survive_a_moved_work_folder(tmp_path):
    # the cached work folder is reused by later runs from any cwd: media paths are relative to the file
    from mmgpt.bench.scale import ensure_jsonl

    ensure_jsonl(tmp_path / "a", 3)
    (tmp_path / "a").rename(tmp_path / "b")
    path = ensure_jsonl(tmp_path / "b", 3)  # cached: not rewritten
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    images = [r["messages"][0]["content"][0]["image"] for r in rows]
    assert len(images) == 3 and all(not Path(i).is_absolute() for i in images)
    assert all((path.parent / i).is_file() for i in images)
