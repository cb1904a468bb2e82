"""Fixtures of the eval tests: a tiny file of every data format, written once per session."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import soundfile as sf
import torch

from tests.conftest import make_image, make_wave


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models generate token by token; one thread avoids spin-wait stalls on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shapestones_test(tmp_path_factory) -> Path:
    """A small ShapesTones test split holding every task (chats weighted up so there are a few)."""
    from mmgpt.datasets.shapestones import generate

    out = tmp_path_factory.mktemp("shapestones")
    generate(out, train=0, val=0, test=80, gen=0, seed=3, image_size=32, progress=False, mix={"chat": 1.5})
    # and a few new-words chats (media in icl/), appended
    generate(out / "icl", train=0, val=0, test=12, gen=0, seed=3, image_size=32, progress=False,
             mix={t: 0.0 for t in ("image_caption", "audio_caption", "image_qa", "audio_qa", "crossmodal_qa",
                                   "chat", "document")} | {"new_words": 1.0})
    extra = (out / "icl" / "test.jsonl").read_text().replace('"media/test/', '"icl/media/test/')
    with open(out / "test.jsonl", "a", encoding="utf-8") as f:
        f.write(extra)
    return out / "test.jsonl"


@pytest.fixture(scope="session")
def coco_file(tmp_path_factory) -> Path:
    """A COCO captions JSON with three images, two captions each."""
    out = tmp_path_factory.mktemp("coco")
    (out / "images").mkdir()
    images, annotations = [], []
    for i in range(3):
        make_image(seed=i).save(out / "images" / f"{i}.png")
        images.append({"id": i, "file_name": f"images/{i}.png"})
        for j, text in enumerate((f"a noisy picture number {i}.", f"random coloured pixels {i}")):
            annotations.append({"id": 10 * i + j, "image_id": i, "caption": text})
    path = out / "captions.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


@pytest.fixture(scope="session")
def audio_csv(tmp_path_factory) -> Path:
    """A Clotho-layout caption CSV with three 0.5 s clips."""
    out = tmp_path_factory.mktemp("clotho")
    path = out / "captions.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "caption_1", "caption_2"])
        for i in range(3):
            sf.write(out / f"clip{i}.wav", make_wave(0.5, freq=300.0 + 200 * i, seed=i), 16000)
            w.writerow([f"clip{i}.wav", f"a steady tone number {i}", f"a humming sound {i}"])
    return path


@pytest.fixture(scope="session")
def transcripts(tmp_path_factory) -> Path:
    """Native JSONL with spoken-word style rows: audio + transcript (the transcription task)."""
    out = tmp_path_factory.mktemp("asr")
    rows = []
    for i in range(3):
        sf.write(out / f"say{i}.wav", make_wave(0.5, freq=500.0 + 100 * i, seed=i), 16000)
        rows.append({"messages": [{"role": "user", "content": [{"type": "audio", "audio": f"say{i}.wav"},
                                                               {"type": "text", "text": "Transcribe."}]}],
                     "meta": {"transcript": f"hello number {i}"}})
    path = out / "asr.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
