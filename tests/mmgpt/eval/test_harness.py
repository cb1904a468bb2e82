"""The harness end to end: every task with a tiny model, reports on disk, and the scorer checked
with a perfect and a constant predictor."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from mmgpt.datasets.readers import read_jsonl
from mmgpt.datasets.schema import Sample
from mmgpt.errors import ConfigError, ContextOverflowError, DataError
from mmgpt.eval import PeriodicEval, evaluate
from mmgpt.eval.harness import load_samples
from mmgpt.eval.tasks import TASKS, collect_items, sample_items

SHAPESTONES_TASKS = ("image_caption", "audio_caption", "image_qa", "audio_qa", "crossmodal_qa", "chat", "new_words")


def truth(prompts, items, max_new_tokens):
    """Answers from the ground truth: checks the scorer, not a model."""
    return [item.answer for item in items]


def test_fixture_covers_every_task(shapestones_test, coco_file, audio_csv, transcripts):
    items = collect_items(load_samples([shapestones_test, coco_file, audio_csv, transcripts]))
    assert set(items) == set(TASKS)
    coco = collect_items(load_samples(coco_file))["image_caption"]
    assert len(coco) == 3 and coco[0].references == ["a noisy picture number 0.", "random coloured pixels 0"]
    clips = collect_items(load_samples(audio_csv))["audio_caption"]
    assert len(clips) == 3 and len(clips[0].references) == 2


def test_media_folder_points_caption_files_at_their_media(coco_file, tmp_path):
    data = json.loads(coco_file.read_text())
    for entry in data["images"]:
        entry["file_name"] = entry["file_name"].removeprefix("images/")  # COCO layout: names only
    moved = tmp_path / "annotations" / "captions.json"
    moved.parent.mkdir()
    moved.write_text(json.dumps(data))
    result = evaluate(None, moved, predictor=truth, media_folder=coco_file.parent / "images", progress=False)
    item = next(iter(load_samples(moved, coco_file.parent / "images")))
    assert next(item.media()).media == coco_file.parent / "images" / "0.png"
    assert result.metrics["image_caption"]["exact_match"] == 1.0


def test_tiny_model_end_to_end_writes_reports(tiny_model, tmp_path, shapestones_test, coco_file, audio_csv,
                                              transcripts):
    data = [shapestones_test, coco_file, audio_csv, transcripts]
    result = evaluate(tiny_model, data, shots=(0, 1), limit=2, batch_size=4, out_dir=tmp_path, progress=False)
    assert result.tasks == list(TASKS)
    for task in TASKS:
        path = tmp_path / f"{task}.json"
        report = json.loads(path.read_text())
        assert [r["shots"] for r in report["results"]] == [0, 1]
        preds = report["results"][1]["predictions"]
        assert len(preds) == 2
        assert all({"source", "prediction", "references"} <= set(p) for p in preds)
        assert all(len(p["examples"]) == 1 for p in preds), task  # one shot each
    md = (tmp_path / "report.md").read_text()
    assert "| image_qa | 1 |" in md and "attributes.png" in md and "shots.png" in md
    for png in ("attributes.png", "shots.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    flat = result.flat()
    assert "image_qa/1shot/accuracy" in flat and "transcription/0shot/wer" in flat
    assert all(isinstance(v, float) for v in flat.values())
    # deterministic with a seed: the same run gives the same predictions
    again = evaluate(tiny_model, data, tasks=["audio_qa"], shots=(1,), limit=2, progress=False)
    assert again.records[1]["audio_qa"] == result.records[1]["audio_qa"]


def test_completion_format_and_similar_examples(tiny_model, coco_file, audio_csv):
    result = evaluate(tiny_model, [coco_file, audio_csv], shots=(2,), select="similar", format="completion",
                      max_new_tokens=6, progress=False)
    assert set(result.metrics) == {"image_caption", "audio_caption"}
    for recs in result.records[2].values():
        assert all(len(r["examples"]) == 2 and r["source"] not in r["examples"] for r in recs)
        assert all("\n" not in r["prediction"] for r in recs)  # the completion is cut at the line end
    assert {"cider", "bleu", "exact_match", "n"} <= set(result.metrics["image_caption"])


def test_perfect_predictor_scores_100_on_every_attribute(shapestones_test):
    result = evaluate(None, shapestones_test, predictor=truth, progress=False)
    assert set(result.metrics) == set(SHAPESTONES_TASKS)
    seen = set()
    for task, m in result.metrics.items():
        assert m["exact_match"] == 1.0
        if task == "new_words":  # invented answers: no attribute vocabulary to score against
            assert "per_attribute" not in m and m["accuracy"] == 1.0
            continue
        assert m["per_attribute"], task
        assert all(v == 1.0 for v in m["per_attribute"].values()), (task, m["per_attribute"])
        seen |= set(m["per_attribute"])
    assert seen == {"count", "colour", "shape", "size", "position", "beeps", "pitch", "waveform", "duration",
                    "loudness", "crossmodal"}
    assert result.metrics["image_caption"]["cider"] > 1.0 and result.metrics["image_caption"]["bleu"] > 99


def test_constant_predictor_scores_the_majority_rate(shapestones_test):
    items = collect_items(read_jsonl(shapestones_test))
    qa = [it for t in ("image_qa", "audio_qa", "crossmodal_qa", "chat") for it in items[t]]
    by_attr: dict[str, Counter] = {}
    for it in qa:
        by_attr.setdefault(it.attribute, Counter())[it.answer] += 1
    majority = {a: c.most_common(1)[0][0] for a, c in by_attr.items()}
    image_counts = Counter(len(it.meta["image"]) for it in items["image_caption"])
    n_major, _ = image_counts.most_common(1)[0]
    audio = [it.meta["audio"] for it in items["audio_caption"]]
    audio_major = {a: Counter(t[a] for t in audio).most_common(1)[0][0]
                   for a in ("beeps", "pitch", "waveform", "duration", "loudness")}
    words = ("zero", "one", "two", "three", "four")
    audio_caption = (f"{words[audio_major['beeps']]} {audio_major['duration']} {audio_major['loudness']} "
                     f"{audio_major['pitch']} {audio_major['waveform']} beeps.")
    image_caption = f"{words[n_major]} shapes: a small red circle at the top left."

    def constant(prompts, batch, max_new_tokens):  # one fixed answer per task and attribute
        fixed = {"image_caption": image_caption, "audio_caption": audio_caption, "new_words": "dax"}
        return [fixed.get(it.task) or majority[it.attribute] for it in batch]

    result = evaluate(None, shapestones_test, predictor=constant, progress=False)
    assert result.metrics["new_words"]["accuracy"] == 0.0  # no constant names an invented word
    for task in ("image_qa", "audio_qa", "crossmodal_qa", "chat"):
        task_items = items[task]
        for attr, acc in result.metrics[task]["per_attribute"].items():
            group = [it for it in task_items if it.attribute == attr]
            assert acc == pytest.approx(sum(it.answer == majority[attr] for it in group) / len(group)), (task, attr)
    img = result.metrics["image_caption"]["per_attribute"]
    assert img["count"] == pytest.approx(image_counts[n_major] / len(items["image_caption"]))
    objects = [o for it in items["image_caption"] for o in it.meta["image"]]
    top_left_red = sum(o["position"] == "top left" and o["colour"] == "red" for o in objects)
    assert img["colour"] == pytest.approx(top_left_red / len(objects))
    aud = result.metrics["audio_caption"]["per_attribute"]
    for attr, value in audio_major.items():
        assert aud[attr] == pytest.approx(sum(t[attr] == value for t in audio) / len(audio)), attr


def test_chat_turns_are_scored_with_the_real_history():
    messages = [{"role": "user", "content": [{"type": "image", "image": "/x.png"}, {"type": "text", "text": "Q1"}]},
                {"role": "assistant", "content": "A1"},
                {"role": "user", "content": "Q2"},
                {"role": "assistant", "content": "A2"}]
    first, second = sample_items(Sample.from_messages(messages, source="c"))
    assert (first.task, first.references, second.references) == ("chat", ["A1"], ["A2"])
    assert [t.role for t in second.query.turns] == ["user", "assistant", "user"]
    assert second.query.turns[1].segments[0].text == "A1"  # teacher-forced history
    single = sample_items(Sample.from_messages(messages[:2], source="s"))
    assert single[0].task == "image_qa"
    doc = Sample.from_document("just text", meta={"task": "document"})
    assert sample_items(doc) == []


def test_context_overflow_drops_examples_then_answers_empty(shapestones_test, caplog):
    def small_context(prompts, items, max_new_tokens):
        if any(sum(1 for _ in p.media()) > 2 for p in prompts):
            raise ContextOverflowError("too many media")
        return ["x"] * len(prompts)

    result = evaluate(None, shapestones_test, tasks=["image_qa"], shots=(3,), predictor=small_context,
                      progress=False, limit=3)
    for rec in result.records[3]["image_qa"]:
        assert len(rec["examples"]) == 1 and rec["prediction"] == "x"  # query + 1 example = 2 images
    assert "examples dropped to fit the context" in caplog.text

    def never_fits(prompts, items, max_new_tokens):
        raise ContextOverflowError("nothing fits")

    result = evaluate(None, shapestones_test, tasks=["image_qa"], predictor=never_fits, progress=False, limit=2)
    assert all(r["prediction"] == "" and "nothing fits" in r["error"] for r in result.records[0]["image_qa"])


def test_bad_arguments_raise(shapestones_test, coco_file):
    with pytest.raises(ConfigError, match="unknown task"):
        evaluate(None, shapestones_test, tasks=["dance"], predictor=truth)
    with pytest.raises(ConfigError, match="shots"):
        evaluate(None, shapestones_test, shots=(-1,), predictor=truth)
    with pytest.raises(ConfigError, match="needs a model"):
        evaluate(None, shapestones_test)
    with pytest.raises(ConfigError, match="similar"):
        evaluate(None, shapestones_test, shots=(1,), select="similar", predictor=truth, limit=1)
    assert evaluate(None, shapestones_test, select="similar", predictor=truth, limit=1).metrics  # 0-shot: no embedding
    with pytest.raises(DataError, match="no evaluation items"):
        evaluate(None, coco_file, tasks=["audio_qa"], predictor=truth)


def test_periodic_eval_logs_flat_metrics_and_leaves_state(tiny_model, shapestones_test):
    periodic = PeriodicEval(shapestones_test, every=10, limit=1, tasks=["image_qa", "audio_caption"])
    assert [periodic.due(s) for s in (0, 5, 10, 20)] == [False, False, True, True]
    tiny_model.train()
    state = torch.get_rng_state()
    try:
        metrics = periodic(tiny_model)
        assert tiny_model.training
    finally:
        tiny_model.eval()
    assert torch.equal(state, torch.get_rng_state())
    assert "eval/image_qa/accuracy" in metrics and "eval/audio_caption/beeps" in metrics
