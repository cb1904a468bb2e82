"""Fixture writers shared by the reader tests: tiny files of every format, made in tmp_path."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from mmgpt.datasets.schema import Sample, Segment, Turn
from mmgpt.errors import DataError


# --- fixture helpers -------------------------------------------------------------------------
def png_bytes(color: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


def wav_bytes() -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(1600, dtype=np.float32), 16000, format="WAV")
    return buf.getvalue()


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    """Rows are objects (dumped) or raw strings (written as they are, to make bad lines)."""
    return write(path, "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def text(s: str) -> Segment:
    return Segment("text", text=s)


def image(media) -> Segment:
    return Segment("image", media=media)


def audio(media) -> Segment:
    return Segment("audio", media=media)


def chat(*turns: tuple[str, list[Segment]], meta: dict, source: str) -> Sample:
    return Sample([Turn(role, segs) for role, segs in turns], meta, source)


CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def jsonl_fixture(tmp_path: Path) -> Path:
    write(tmp_path / "data" / "img" / "a.png", png_bytes())
    write(tmp_path / "data" / "clip.wav", wav_bytes())
    return write_jsonl(tmp_path / "data" / "train.jsonl", [
        {"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "image", "image": "img/a.png"}, {"type": "text", "text": "What?"}]},
            {"role": "assistant", "content": "A red square."},
        ], "meta": {"id": 7}},
        "",
        {"document": [{"type": "text", "text": "Listen:"}, {"type": "audio", "audio": "clip.wav"},
                      {"type": "text", "text": "silence."}], "id": "doc-1", "task": "asr"},
    ])


def llava_fixture(tmp_path: Path) -> Path:
    write(tmp_path / "llava" / "a.png", png_bytes())
    write(tmp_path / "llava" / "b.png", png_bytes((0, 0, 255)))
    return write(tmp_path / "llava" / "llava.json", json.dumps([
        {"id": "a", "image": "a.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A red square."}]},
        {"id": "b", "image": "b.png", "conversations": [
            {"from": "human", "value": "Describe."}, {"from": "gpt", "value": "Blue."}]},
        {"id": "c", "image": ["a.png", "b.png"], "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Compare <image> and <image>\nnow."}, {"from": "gpt", "value": "Red, blue."}]},
        {"id": "d", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
    ]))


def coco_fixture(tmp_path: Path, annotations: list | None = None) -> Path:
    write(tmp_path / "coco" / "1.png", png_bytes())
    write(tmp_path / "coco" / "2.png", png_bytes((0, 0, 255)))
    return write(tmp_path / "coco" / "captions.json", json.dumps({
        "info": {},
        "images": [{"id": 1, "file_name": "1.png"}, {"id": 2, "file_name": "2.png"}],
        "annotations": annotations if annotations is not None else [
            {"id": 10, "image_id": 1, "caption": "A red square."},
            {"id": 11, "image_id": 2, "caption": " A blue square.\n"},
            {"id": 12, "image_id": 1, "caption": "Red."},
        ],
    }))


AUDIOCAPS_CSV = "audiocap_id,youtube_id,start_time,caption\n1,abc,0,A dog barks.\n2,def,10,Rain falls.\n3,abc,0,Barking.\n"
CLOTHO_CSV = "file_name,caption_1,caption_2,caption_10\nx.wav,One.,Two.,Ten.\ny.wav,Uno.,Dos.,Diez.\n"


def shard_fixture(tmp_path: Path, name: str = "shard-000.tar") -> Path:
    native = {"messages": [
        {"role": "user", "content": [{"type": "image", "image": "png"}, {"type": "text", "text": "Color?"}]},
        {"role": "assistant", "content": "Red."}], "meta": {"id": 2}}
    two = {"document": [{"type": "image", "image": "0.png"}, {"type": "text", "text": "then"},
                        {"type": "image", "image": "1.png"}]}
    return write_tar(tmp_path / name, [
        ("s/000.png", png_bytes()), ("s/000.txt", b"A red square.\n"),
        ("s/001.wav", wav_bytes()), ("s/001.json", json.dumps({"caption": "Silence.", "url": "u"}).encode()),
        ("s/002.png", png_bytes()), ("s/002.json", json.dumps(native).encode()),
        ("s/003.0.png", png_bytes()), ("s/003.1.png", png_bytes((0, 0, 255))), ("s/003.json", json.dumps(two).encode()),
        ("s/004.txt", b"Just text."), ("s/004.cls", b"3"),
    ])




def raises_then_skips(read, path: Path, needle: str) -> tuple[str, list[Sample]]:
    """``read(path)`` raises a DataError matching ``needle``; ``read(path, on_error="skip")``
    skips exactly one sample. Returns the error's text and the samples kept."""
    with pytest.raises(DataError, match=needle) as info:
        list(read(path))
    reader = read(path, on_error="skip")
    kept = list(reader)
    assert reader.skipped == 1
    return str(info.value), kept
