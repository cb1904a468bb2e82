"""ShapesTones' in-context tasks: ``fewshot`` chats lay out solved items then a query as the few-shot
prompts do; ``new_words`` answers exist only in the examples, which the eval's k-shot prompts take
from the item itself; ``recall`` documents teach the same lookup in text, for the text stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmgpt.datasets.shapestones import generate
from mmgpt.datasets.shapestones.world import VOCAB

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def icl_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("icl")
    generate(out, train=300, val=0, test=160, gen=0, seed=5, image_size=32, progress=False,
             mix={"fewshot": 2.0, "new_words": 2.0, "recall": 1.0})
    return out


def rows(path: Path, task: str) -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["meta"]["task"] == task]


def audio_truth(folder: Path) -> dict[str, dict]:
    """Clip path -> ground truth, from the rows that state it."""
    out = {}
    for split in ("train", "test"):
        for r in map(json.loads, (folder / f"{split}.jsonl").read_text().splitlines()):
            if r["meta"]["task"] == "audio_caption":
                out[r["messages"][0]["content"][0]["audio"]] = r["meta"]["audio"]
    return out


def test_new_words_answers_are_only_in_the_examples(icl_data):
    truth = audio_truth(icl_data)
    for split in ("train", "test"):
        records = rows(icl_data / f"{split}.jsonl", "new_words")
        assert len(records) > 10
        for r in records:
            meta, msgs = r["meta"], r["messages"]
            attribute, words = meta["named_attribute"], meta["words"]
            assert set(words) == set(VOCAB[attribute]) and not set(words.values()) & {w for v in VOCAB.values()
                                                                                    for w in v}
            k = meta["shots"]
            assert len(msgs) == 2 * (k + 1) and (k == 4 if split == "test" else 2 <= k <= 4)
            clips = [m["content"][0]["audio"] for m in msgs[::2]]
            answers = [m["content"][0]["text"] for m in msgs[1::2]]
            assert answers[-1] == meta["answer"] == words[meta["audio"][attribute]]
            for clip, answer in zip(clips, answers):  # every example is named right
                if clip in truth:
                    assert answer == words[truth[clip][attribute]]
            window = answers[:2] if split == "test" else answers[:-1]  # test: 2 shots already hold it
            assert meta["answer"] in window
            assert len(set(clips)) == len(clips)  # the query's clip is never an example
    mappings = {json.dumps(r["meta"]["words"], sort_keys=True) for r in rows(icl_data / "train.jsonl", "new_words")}
    assert len(mappings) > 0.9 * len(rows(icl_data / "train.jsonl", "new_words"))  # drawn afresh per chat


def test_recall_documents_name_sounds_with_words_drawn_per_document_and_use_them_again(icl_data):
    from mmgpt.datasets.shapestones.tasks import NEW_WORD_QUESTIONS, RECALL_ITEMS
    from mmgpt.datasets.shapestones.text import audio_caption

    lines = [json.loads(x) for x in (icl_data / "train.jsonl").read_text().splitlines()]
    truth = {r["meta"]["scene"]: r["meta"]["audio"] for r in lines if isinstance(r["meta"].get("audio"), dict)}
    records = rows(icl_data / "train.jsonl", "recall")
    assert len(records) > 10
    for r in records:
        meta, (part,) = r["meta"], r["document"]
        attribute, words = meta["named_attribute"], meta["words"]
        assert set(words) == set(VOCAB[attribute]) and not set(words.values()) & {w for v in VOCAB.values() for w in v}
        scenes = [*meta["scenes"], meta["scene"]]
        assert RECALL_ITEMS[0] <= len(scenes) <= RECALL_ITEMS[1] and len(set(scenes)) == len(scenes)
        items = part["text"].split("The sound: ")[1:]
        assert len(items) == len(scenes)
        for item, scene in zip(items, scenes):  # each sound in words, a question, its name
            caption = audio_caption(truth[scene])
            rest = item.strip().removeprefix(caption).strip()
            question, name = rest.rsplit(" ", 1)
            assert rest != item.strip() and name == words[truth[scene][attribute]]
            assert question in {q.format(a=attribute) for q in NEW_WORD_QUESTIONS}
        named = [words[truth[s][attribute]] for s in scenes]
        assert len(set(named)) < len(named)  # a name comes back: from then on it is copied, not guessed
    assert len({json.dumps(r["meta"]["words"], sort_keys=True) for r in records}) > 0.9 * len(records)


def test_recall_documents_leave_every_other_line_as_it_was(tmp_path):
    """Given weight (one line per scene more, the other tasks' lines per scene unchanged), ``recall``
    adds its documents and every other line is one the dataset without them has."""
    from mmgpt.datasets.shapestones import DEFAULT_MIX, resolve_mix

    mix = {"fewshot": 1.0, "new_words": 1.0}
    with_recall = {**mix, "recall": sum({**DEFAULT_MIX, **mix}.values()) / 4.0}  # 1 of 5 lines per scene
    before, after = resolve_mix(mix, 4.0), resolve_mix(with_recall, 5.0)
    assert before.pop("recall") == 0 and after.pop("recall") == pytest.approx(1.0) and after == pytest.approx(before)
    for name, m, lines in (("a", mix, 4.0), ("b", with_recall, 5.0)):
        generate(tmp_path / name, train=240, val=0, test=0, gen=0, seed=4, image_size=16, progress=False, mix=m,
                 scene_lines=lines)
    old = set((tmp_path / "a" / "train.jsonl").read_text().splitlines())
    new = (tmp_path / "b" / "train.jsonl").read_text().splitlines()
    others = [x for x in new if json.loads(x)["meta"]["task"] != "recall"]
    assert 30 < len(new) - len(others) < 70 and set(others) <= old


def test_data_made_before_recall_existed_is_made_again_byte_for_byte(tmp_path):
    """The figures in BENCHMARKS.md were measured on data generated before ``recall`` existed:
    its own random stream keeps every dataset without it identical (a hash of the text of a small
    quickstart-like dataset from that code). If a change to the generator is meant to alter the
    data, update the hash and say in BENCHMARKS.md which figures were measured on the old data."""
    import hashlib

    generate(tmp_path, train=120, val=0, test=40, gen=0, seed=11, image_size=16, progress=False,
             mix={"fewshot": 1.0, "new_words": 1.0}, scene_lines=4.0)
    text = b"".join((tmp_path / f"{split}.jsonl").read_bytes() for split in ("train", "test"))
    assert hashlib.sha256(text).hexdigest() == "a88ffe93e518b8e3156ee4db50c14da94aaf5faf3e17b47dd3357bde4a137a0a"


def test_only_the_text_stage_trains_on_recall_documents():
    from mmgpt.train import TrainConfig

    recipes = sorted((ROOT / "mmgpt" / "recipes").glob("stage*.yaml"))
    tasks = {p.stem: TrainConfig.from_yaml(p, []).data.tasks for p in recipes}
    assert tasks.pop("stage0a_text") is None  # every task's text
    assert len(tasks) == 4 and all(t and "recall" not in t for t in tasks.values())


def test_fewshot_chats_are_solved_items_then_the_query(icl_data):
    records = rows(icl_data / "train.jsonl", "fewshot")
    assert len(records) > 10 and {r["meta"]["query_task"] for r in records} >= {"image_qa", "audio_caption"}
    for r in records:
        k, msgs = r["meta"]["shots"], r["messages"]
        assert 1 <= k <= 4 and len(msgs) == 2 * (k + 1)
        assert [m["role"] for m in msgs] == ["user", "assistant"] * (k + 1)
        assert msgs[-1]["content"][0]["text"] == r["meta"]["answer"]
        media = [p[p["type"]] for m in msgs[::2] for p in m["content"] if p["type"] != "text"]
        assert len(set(media)) == len(media)  # examples from other scenes than the query's


def test_generation_does_not_depend_on_string_hashing(tmp_path):
    code = ("import sys; from mmgpt.datasets.shapestones import generate; "
            "generate(sys.argv[1], train=80, val=0, test=0, gen=0, seed=2, image_size=16, progress=False, "
            "mix={'new_words': 3.0, 'fewshot': 1.0})")
    for seed in ("1", "2"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / seed)], check=True, cwd=ROOT,
                       env={**os.environ, "PYTHONHASHSEED": seed})
    assert (tmp_path / "1" / "train.jsonl").read_bytes() == (tmp_path / "2" / "train.jsonl").read_bytes()


def test_k_shot_new_words_prompts_take_the_items_own_examples(icl_data):
    from mmgpt.eval import evaluate

    def reads_examples(prompts, items, max_new_tokens):
        """Answers right exactly when the prompt states the answer word (an ideal in-context learner)."""
        out = []
        for prompt, item in zip(prompts, items):
            text = " ".join(s.text for _, s in prompt.segments if s.type == "text")
            out.append(item.answer if item.answer in text.split() else "dax")
        return out

    result = evaluate(None, icl_data / "test.jsonl", tasks=["new_words"], shots=(0, 2, 4),
                      predictor=reads_examples, progress=False)
    acc = {k: result.by_shots[k]["new_words"]["accuracy"] for k in (0, 2, 4)}
    assert acc == {0: 0.0, 2: 1.0, 4: 1.0}
    recs = result.records[2]["new_words"]
    assert all(r["examples"] == [f"{r['source']}#example0", f"{r['source']}#example1"] for r in recs)
