"""ShapesTones' in-context tasks: ``fewshot`` chats lay out solved items then a query as the few-shot
prompts do; ``new_words`` answers exist only in the examples, which the eval's k-shot prompts take
from the item itself."""

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
             mix={"fewshot": 2.0, "new_words": 2.0})
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
