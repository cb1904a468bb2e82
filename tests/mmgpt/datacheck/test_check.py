"""`mmgpt data check` / `inspect`: clean ShapesTones passes, each broken row is counted once by kind."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from mmgpt import resources
from mmgpt.cli import main
from mmgpt.datacheck.check import check_dataset
from mmgpt.datacheck.cli import DEFAULT_PRESET
from mmgpt.datacheck.inspection import inspect_dataset, render_tokens
from mmgpt.datasets.shapestones import generate
from mmgpt.processor import Processor
from tests.conftest import TINY, make_image


@pytest.fixture(scope="module")
def shapestones(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("st")
    generate(out, train=30, val=0, test=0, gen=0, progress=False)
    return out / "train.jsonl"


@pytest.fixture
def proc(tiny_model) -> Processor:
    return tiny_model.processor


def chat(user, answer, image: str | None = "img.png") -> dict:
    content = ([{"type": "image", "image": image}] if image else []) + [{"type": "text", "text": user}]
    turns = [{"role": "user", "content": content}]
    if answer is not None:
        turns.append({"role": "assistant", "content": answer})
    return {"messages": turns}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def broken(tmp_path) -> Path:
    """One good row, then one row per problem kind (line numbers in the comments)."""
    make_image(size=32).save(tmp_path / "img.png")
    png = (tmp_path / "img.png").read_bytes()
    (tmp_path / "corrupt.png").write_bytes(png[: len(png) // 2])
    return write_jsonl(tmp_path / "bad.jsonl", [
        chat("What colour?", "red"),  # 1 good
        '{"messages": [',  # 2 parse
        chat("What colour?", "red", image="missing.png"),  # 3 media: not found
        chat("What colour?", "red", image="corrupt.png"),  # 4 media: truncated
        chat("hi", ""),  # 5 no_targets: the assistant turn is empty
        {"document": [{"type": "image", "image": "img.png"}] * 12 + [{"type": "text", "text": "x"}]},  # 6 overflow
        chat("x" * 100, "ok"),  # 7 trimmed (a warning): the sample is fine otherwise
    ])


def test_clean_shapestones_passes_with_plausible_stats(shapestones, proc):
    lines = [json.loads(line) for line in shapestones.read_text().splitlines()]
    report = check_dataset(shapestones, proc)
    assert report.ok and set(report.examples) <= {"trimmed"}  # a few long documents exceed the tiny context
    assert report.warnings["trimmed"] == len(report.examples.get("trimmed", []))
    assert report.rows == report.samples == report.samples_ok == len(lines) == 30
    assert set(report.errors.values()) == {0}

    def parts(row, kind):
        turns = row.get("messages") or [{"content": row["document"]}]
        return sum(p["type"] == kind for t in turns if isinstance(t["content"], list) for p in t["content"])

    assert report.images == dict(sorted(Counter(parts(r, "image") for r in lines).items()))
    assert report.audios == dict(sorted(Counter(parts(r, "audio") for r in lines).items()))
    assert report.tasks == dict(sorted(Counter(r["meta"]["task"] for r in lines).items()))
    t = report.tokens
    assert 10 < t["min"] <= t["p50"] <= t["p95"] <= t["max"] <= report.max_length == 256
    assert report.targets["min"] >= 2 and report.targets["max"] < t["max"]  # something trained, never everything
    assert 0.1 < report.audio_seconds["min"] <= report.audio_seconds["max"] < 5
    assert check_dataset(shapestones, proc, limit=5).rows == 5


def test_each_problem_is_counted_once_with_its_row(broken, proc):
    report = check_dataset(broken, proc, max_length=64)
    assert not report.ok
    assert report.errors == {"parse": 1, "media": 2, "overflow": 1, "placeholders": 0, "no_targets": 1, "data": 0}
    assert report.warnings == {"trimmed": 1}
    assert (report.rows, report.samples, report.samples_ok) == (7, 6, 2)  # rows 1 and 7
    where = {kind: [m.split(": ")[0] for m in msgs] for kind, msgs in report.examples.items()}
    assert where == {"parse": [f"{broken}:2"], "media": [f"{broken}:3", f"{broken}:4"], "no_targets": [f"{broken}:5"],
                     "overflow": [f"{broken}:6"], "trimmed": [f"{broken}:7"]}
    assert "not found" in report.examples["media"][0] and "corrupt" in report.examples["media"][1]
    text = report.format()
    assert "FAILED (parse, media, overflow, no_targets)" in text and f"{broken}:5" in text


def test_allow_no_targets_makes_it_a_warning(tmp_path, proc):
    make_image(size=32).save(tmp_path / "img.png")
    path = write_jsonl(tmp_path / "d.jsonl", [chat("q", "a"), chat("hi", ""), chat("no answer", None)])
    strict = check_dataset(path, proc)
    assert strict.errors["no_targets"] == 2 and not strict.ok and strict.samples_ok == 1
    lenient = check_dataset(path, proc, allow_no_targets=True)
    assert lenient.ok and lenient.warnings["no_targets"] == 2 and "no_targets" not in lenient.errors
    assert lenient.samples_ok == 3


def test_placeholder_mismatch_is_reported(tmp_path, proc, tiny_config):
    class DropsOnePad(Processor):  # a broken processor: one image pad fewer than the adapter outputs
        def __call__(self, sample, **kwargs):
            enc = super().__call__(sample, **kwargs)
            keep = torch.ones_like(enc.input_ids, dtype=torch.bool)
            keep[enc.input_ids.tolist().index(self.ids["<|image_pad|>"])] = False
            enc.input_ids, enc.labels = enc.input_ids[keep], enc.labels[keep]
            return enc

    make_image(size=32).save(tmp_path / "img.png")
    path = write_jsonl(tmp_path / "d.jsonl", [chat("q", "a")])
    broken = DropsOnePad(proc.tokenizer, tiny_config, proc.encoders)
    report = check_dataset(path, broken)
    assert report.errors["placeholders"] == 1 and not report.ok and report.samples_ok == 0
    assert "need 1 <|image_start|>, 4 <|image_pad|>" in report.examples["placeholders"][0]
    assert "hold 1, 3, 1" in report.examples["placeholders"][0]


def test_inspect_marks_trained_tokens_and_collapses_pads(tmp_path, proc):
    make_image(size=32).save(tmp_path / "img.png")
    path = write_jsonl(tmp_path / "d.jsonl", [chat("What colour?", "red"), chat("hi", "")])
    out = io.StringIO()
    status = inspect_dataset(path, proc, n=1, file=out)
    text = out.getvalue()
    assert status == 0
    assert "[[ red<|im_end|>]]" in text and "<|image_start|><|image_pad|>×4<|image_end|> What colour?" in text
    assert "tokens: 44, trained: 5" in text  # prefix space + 3 bytes of "red" + <|im_end|> (byte-level tokenizer)
    assert text.count("[[") == 1 and "=== sample 2" not in text
    out = io.StringIO()
    assert inspect_dataset(path, proc, n=5, file=out) == 1  # the second sample trains nothing
    assert "!!! ERROR: nothing trained" in out.getvalue() and f"{path}:2" in out.getvalue()
    enc = proc(chat("What colour?", "red", image=str(tmp_path / "img.png"))["messages"])
    assert "\033[32;1m[[ red<|im_end|>]]\033[0m" in render_tokens(enc, proc, color=True)


def test_cli_end_to_end(shapestones, broken, tmp_path, capsys):
    assert resources.preset(DEFAULT_PRESET).is_file()
    assert main(["data", "check", str(shapestones), "--config", str(TINY), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "samples ok   30 / 30" in out and out.rstrip().splitlines()[-1].startswith("OK")
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["ok"] is True and saved["rows"] == 30
    assert main(["data", "check", str(broken), "--config", str(TINY), "--max-length", "64"]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert main(["data", "inspect", str(shapestones), "--config", str(TINY), "--n", "2", "--no-color"]) == 0
    out = capsys.readouterr().out
    assert "=== sample 2" in out and "=== sample 3" not in out and "[[" in out and "\033[" not in out


def test_check_a_folder_of_datasets_with_a_media_folder(tmp_path, capsys):
    from mmgpt.datasets.shapestones import write_coco

    coco = write_coco(tmp_path / "coco", {"train": 3, "val": 2}, image_size=32, progress=False)
    annotations = tmp_path / "coco" / "annotations"
    (annotations / "instances_train.json").write_text('{"images": [], "categories": []}')
    args = ["data", "check", str(annotations), "--config", str(TINY), "--media-folder", coco["train"]["media_folder"]]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 dataset files checked, 0 failed" in out and "not a dataset: " in out and "instances_train" in out
    data = json.loads((annotations / "captions_val.json").read_text())
    data["images"][1]["file_name"] = "../../secret.png"
    (annotations / "captions_val.json").write_text(json.dumps(data))
    assert main([*args, "--json", str(tmp_path / "r.json")]) == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert not report["ok"] and [f["ok"] for f in report["files"]] == [True, False]
    assert "outside the media folder" in report["files"][1]["examples"]["parse"][0]
    assert main([*args, "--allow-outside-media-folder"]) == 1  # allowed, but no such file: a media error
    assert "media " in capsys.readouterr().out
