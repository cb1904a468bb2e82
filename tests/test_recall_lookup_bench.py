"""``benchmarks/recall_lookup.py``: its held-out documents hold the answer among the examples, its
score separates looking up from copying, and it runs end to end on a saved model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("recall_lookup", ROOT / "benchmarks" / "recall_lookup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_held_out_documents_name_the_query_value_among_the_examples(bench):
    docs = bench.held_out(50, seed=3)
    assert docs == bench.held_out(50, seed=3) and docs != bench.held_out(50, seed=4)
    for doc in docs:
        assert len(doc) == 5 and doc[-1][1] in {name for _, name in doc[:-1]}
        assert bench.prompt_text(doc).endswith(doc[-1][0]) and doc[-1][1] not in doc[-1][0].split()
    assert all(doc[-1][0].endswith(" is") for doc in bench.held_out(5, seed=3, keyed=True))


def test_score_tells_looking_up_from_copying(bench):
    docs = bench.held_out(200, seed=5)
    oracle = bench.score([d[-1][1] + " The sound" for d in docs], docs)
    assert oracle["right"] == 100 and oracle["prompt_name"] == 100
    first = bench.score([d[0][1] for d in docs], docs)  # copies, but always the first example's name
    assert first["prompt_name"] == 100 and 30 < first["right"] < 80 and 40 < first["chance"] < 60
    assert bench.score(["toma"] * 200, docs)["prompt_name"] < 5 and bench.score([""] * 200, docs)["right"] == 0


def test_runs_on_a_saved_model_and_writes_training_documents(bench, tmp_path, capsys):
    from mmgpt.model import MMGPT

    torch.manual_seed(0)
    MMGPT.from_config("tiny").save_pretrained(tmp_path / "m")
    assert bench.main([str(tmp_path / "m"), "--n", "6"]) == 0
    assert "right " in capsys.readouterr().out
    bench.main(["--write-train", str(tmp_path / "t.jsonl"), "--docs", "5", "--seed", "1"])
    rows = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and all(6 <= r["document"][0]["text"].count("The sound:") <= 12 for r in rows)
