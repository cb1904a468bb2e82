"""Does a text model read names off its examples? The measurement behind BENCHMARKS.md, "Copying is
learnable in the text stage, the lookup is not yet".

Held-out documents in the form of ShapesTones' ``recall`` task: 4 sounds described in words, each
asked about and named with invented words drawn per document, then a fifth sound whose value is
among the four; the model completes the fifth name (greedy). Reported: right %, the share of
answers that are a name from the prompt (copying), and what copying a random prompt name would
score (the chance of a model that copies but cannot look up).

    python benchmarks/recall_lookup.py runs/quickstart/stage0a_text/final [MODEL ...] [--n 300] [--keyed]
    python benchmarks/recall_lookup.py --write-train recall_train.jsonl --docs 20000 --seed 1 [--keyed]

``--keyed`` states the value before each name (``... of this sound? mid is guzo``). ``--write-train``
writes training documents of 6-12 sounds in the same form (the runs of BENCHMARKS.md shuffled
20,000 of them with the quickstart's train.jsonl for stage 0a).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from mmgpt.datasets.shapestones.tasks import NEW_WORD_ATTRIBUTES, NEW_WORD_QUESTIONS, new_words
from mmgpt.datasets.shapestones.text import audio_caption
from mmgpt.datasets.shapestones.world import VOCAB, sample_audio_scene


def document(rng: np.random.Generator, n_items: int, query_seen: bool = False, keyed: bool = False):
    """``[(prompt, name), ...]`` for one document; ``query_seen``: the last sound's value is among
    the earlier ones (held-out documents)."""
    attribute = NEW_WORD_ATTRIBUTES[int(rng.integers(len(NEW_WORD_ATTRIBUTES)))]
    names = dict(zip(VOCAB[attribute], new_words(rng, len(VOCAB[attribute]))))
    sounds = [sample_audio_scene(rng) for _ in range(n_items)]
    while query_seen and sounds[-1][attribute] not in [s[attribute] for s in sounds[:-1]]:
        sounds[-1] = sample_audio_scene(rng)
    parts = []
    for s in sounds:
        question = NEW_WORD_QUESTIONS[int(rng.integers(len(NEW_WORD_QUESTIONS)))].format(a=attribute)
        key = f" {s[attribute]} is" if keyed else ""
        parts.append((f"The sound: {audio_caption(s)} {question}{key}", names[s[attribute]]))
    return parts


def held_out(n: int, seed: int, keyed: bool = False) -> list[list[tuple[str, str]]]:
    rng = np.random.default_rng(seed)
    return [document(rng, 5, query_seen=True, keyed=keyed) for _ in range(n)]


def prompt_text(doc: list[tuple[str, str]]) -> str:
    """Every sound with its name, then the last sound without it."""
    return " ".join(f"{p} {a}" for p, a in doc[:-1]) + " " + doc[-1][0]


def score(answers: list[str], docs: list[list[tuple[str, str]]]) -> dict[str, float]:
    """Right %, answers that are a prompt name %, and a random prompt name's expected score %."""
    right = copied = chance = 0.0
    for answer, doc in zip(answers, docs, strict=True):
        word = answer.split()[0].strip(".") if answer.split() else ""
        names = {a for _, a in doc[:-1]}
        right += word == doc[-1][1]
        copied += word in names
        chance += 1 / len(names)
    n = len(docs)
    return {"right": 100 * right / n, "prompt_name": 100 * copied / n, "chance": 100 * chance / n}


def complete(model_dir: str, docs, batch_size: int = 32) -> list[str]:
    from mmgpt.datasets.schema import Sample
    from mmgpt.generation import generate
    from mmgpt.model import load

    model = load(model_dir).eval()
    answers: list[str] = []
    for i in range(0, len(docs), batch_size):
        prompts = [Sample.from_document([{"type": "text", "text": prompt_text(d)}]) for d in docs[i:i + batch_size]]
        answers += generate(model, prompts, mode="completion", max_new_tokens=4)
    return answers


def write_train(path: str, n: int, seed: int, keyed: bool) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for _ in range(n):
            text = " ".join(f"{p} {a}" for p, a in document(rng, int(rng.integers(6, 13)), keyed=keyed))
            f.write(json.dumps({"document": [{"type": "text", "text": text}], "meta": {"task": "recall"}}) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", help="model directories (mmgpt checkpoints)")
    p.add_argument("--n", type=int, default=300, help="held-out documents (default 300)")
    p.add_argument("--seed", type=int, default=12345, help="seed of the held-out documents")
    p.add_argument("--keyed", action="store_true", help="state the value before each name")
    p.add_argument("--write-train", metavar="PATH", help="write training documents instead of scoring")
    p.add_argument("--docs", type=int, default=20000, help="training documents to write")
    args = p.parse_args(argv)
    if args.write_train:
        write_train(args.write_train, args.docs, args.seed, args.keyed)
        return 0
    docs = held_out(args.n, args.seed, args.keyed)
    for model in args.models:
        s = score(complete(model, docs), docs)
        print(f"{model}: right {s['right']:.1f} %, a prompt name {s['prompt_name']:.1f} %, "
              f"random prompt name {s['chance']:.1f} % (n={args.n})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
