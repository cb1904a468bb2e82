"""Tests of mmgpt.datasets.readers: each format on a tiny fixture written here, exact samples."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from mmgpt.datasets.readers import (
    AudioCaptionsReader,
    CocoCaptionsReader,
    JsonlReader,
    LlavaReader,
    WebDatasetReader,
    read_audio_captions,
    read_coco_captions,
    read_jsonl,
    read_llava,
    read_samples,
    read_webdataset,
)
from mmgpt.datasets.schema import Sample, Segment, Turn
from mmgpt.errors import ConfigError, DataError


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


# --- native JSONL ----------------------------------------------------------------------------
def test_jsonl_chat_and_document_exact(tmp_path, monkeypatch):
    jsonl_fixture(tmp_path)
    monkeypatch.chdir(tmp_path)  # a relative data path must still give absolute media paths
    samples = list(read_jsonl("data/train.jsonl"))
    data = tmp_path / "data"
    assert samples == [
        chat(("system", [text("Be brief.")]), ("user", [image(data / "img" / "a.png"), text("What?")]),
             ("assistant", [text("A red square.")]), meta={"id": 7}, source="data/train.jsonl:1"),
        Sample([Turn(None, [text("Listen:"), audio(data / "clip.wav"), text("silence.")])],
               {"id": "doc-1", "task": "asr"}, "data/train.jsonl:3"),
    ]
    media = [seg.media for s in samples for seg in s.media()]
    assert all(isinstance(m, Path) and m.is_absolute() and m.is_file() for m in media)


def test_jsonl_keeps_absolute_paths_and_urls(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"document": [
        {"type": "image", "image": "/abs/x.png"}, {"type": "image", "url": "https://h/x.png"}]}])
    (sample,) = read_jsonl(path)
    assert [s.media for s in sample.media()] == [Path("/abs/x.png"), "https://h/x.png"]


@pytest.mark.parametrize("bad, needle", [
    ('{"messages": [', "invalid JSON"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "unknown role 'robot'"),
    ({"document": [{"type": "video", "video": "v.mp4"}]}, "unknown type 'video'"),
    ({"text": "no messages"}, "needs exactly one of 'messages' or 'document'"),
    ({"messages": CHAT["messages"], "meta": [1]}, "'meta' must be an object"),
    ("[1, 2]", "expected a JSON object"),
])
def test_jsonl_bad_line_raises_or_skips(tmp_path, bad, needle):
    path = write_jsonl(tmp_path / "rows.jsonl", [CHAT, bad, CHAT])
    with pytest.raises(DataError, match=needle) as info:
        list(read_jsonl(path))
    assert "rows.jsonl:2" in str(info.value)

    reader = read_jsonl(path, on_error="skip")
    assert [s.source for s in reader] == [f"{path}:1", f"{path}:3"]
    assert reader.skipped == 1 and reader.stats.samples == 2
    assert len(reader.errors) == 1 and f"{path}:2" in reader.errors[0] and needle in reader.errors[0]
    assert list(reader) and reader.skipped == 1  # a second pass starts fresh counts


def test_jsonl_undecodable_line_is_one_bad_row(tmp_path):
    path = write(tmp_path / "bytes.jsonl", b'{"document": "a"}\n{"document": "\xff"}\n{"document": "c"}\n')
    with pytest.raises(DataError, match=r"bytes\.jsonl:2: not UTF-8"):
        list(read_jsonl(path))
    reader = read_jsonl(path, on_error="skip")
    assert [s.text() for s in reader] == ["a", "c"] and reader.skipped == 1


def test_jsonl_is_lazy(tmp_path):
    path = write_jsonl(tmp_path / "lazy.jsonl", [CHAT, CHAT, "{broken", CHAT])
    it = iter(read_jsonl(path))
    assert next(it).source == f"{path}:1"
    assert next(it).source == f"{path}:2"
    with pytest.raises(DataError, match=r"lazy\.jsonl:3"):
        next(it)


def test_jsonl_glob_reads_files_in_sorted_order(tmp_path):
    for name, word in (("b.jsonl", "bee"), ("a.jsonl", "ay")):
        write_jsonl(tmp_path / name, [{"document": word}, {"document": word + "2"}])
    reader = read_jsonl(tmp_path / "*.jsonl")
    assert reader.paths == [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    assert [s.text() for s in reader] == ["ay", "ay2", "bee", "bee2"]


def test_missing_path_or_empty_glob_raises_at_once(tmp_path):
    with pytest.raises(DataError, match="matches no file"):
        read_jsonl(tmp_path / "*.jsonl")
    with pytest.raises(DataError, match="no such file"):
        read_llava(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="on_error"):
        read_jsonl(jsonl_fixture(tmp_path), on_error="ignore")


# --- LLaVA -----------------------------------------------------------------------------------
def test_llava_markers_images_and_roles(tmp_path):
    path = llava_fixture(tmp_path)
    a, b = tmp_path / "llava" / "a.png", tmp_path / "llava" / "b.png"
    assert list(read_llava(path)) == [
        chat(("user", [image(a), text("What is it?")]), ("assistant", [text("A red square.")]),
             meta={"id": "a"}, source=f"{path}[0]"),
        chat(("user", [image(b), text("Describe.")]), ("assistant", [text("Blue.")]),
             meta={"id": "b"}, source=f"{path}[1]"),
        chat(("system", [text("Be brief.")]),
             ("user", [text("Compare "), image(a), text(" and "), image(b), text("now.")]),
             ("assistant", [text("Red, blue.")]), meta={"id": "c"}, source=f"{path}[2]"),
        chat(("user", [text("Hi")]), ("assistant", [text("Hello")]), meta={"id": "d"}, source=f"{path}[3]"),
    ]


def test_llava_image_folder(tmp_path):
    path = llava_fixture(tmp_path)
    first = next(iter(read_llava(path, image_folder=tmp_path / "elsewhere")))
    assert first.turns[0].segments[0].media == tmp_path / "elsewhere" / "a.png"


@pytest.mark.parametrize("row, needle", [
    ({"id": "x", "image": "a.png"}, "missing 'conversations'"),
    ({"id": "x", "conversations": [{"from": "robot", "value": "hi"}]}, "unknown role"),
    ({"id": "x", "image": "a.png", "conversations": [{"from": "human", "value": "<image><image>"}]},
     "2 <image> markers but 1 images"),
    ({"id": "x", "conversations": [{"from": "human", "value": "<image> hi"}]}, "1 <image> markers but 0 images"),
    ({"id": "x", "image": "a.png", "conversations": [{"from": "gpt", "value": "<image>"}]}, "assistant turn"),
])
def test_llava_bad_row_raises_or_skips(tmp_path, row, needle):
    good = {"id": "g", "conversations": [{"from": "human", "value": "hi"}]}
    path = write(tmp_path / "bad.json", json.dumps([good, row, good]))
    with pytest.raises(DataError, match=needle) as info:
        list(read_llava(path))
    assert "bad.json[1] (id 'x')" in str(info.value)
    reader = read_llava(path, on_error="skip")
    assert [s.meta["id"] for s in reader] == ["g", "g"] and reader.skipped == 1


# --- COCO captions ---------------------------------------------------------------------------
def test_coco_each_first_all(tmp_path):
    path = coco_fixture(tmp_path)
    one, two = tmp_path / "coco" / "1.png", tmp_path / "coco" / "2.png"
    user = lambda m, p="Describe the image.": ("user", [image(m), text(p)])  # noqa: E731
    answer = lambda c: ("assistant", [text(c)])  # noqa: E731
    assert list(read_coco_captions(path)) == [
        chat(user(one), answer("A red square."), meta={"image_id": 1, "file_name": "1.png", "annotation_id": 10},
             source=f"{path}:annotations[0]"),
        chat(user(two), answer("A blue square."), meta={"image_id": 2, "file_name": "2.png", "annotation_id": 11},
             source=f"{path}:annotations[1]"),
        chat(user(one), answer("Red."), meta={"image_id": 1, "file_name": "1.png", "annotation_id": 12},
             source=f"{path}:annotations[2]"),
    ]
    refs1 = {"image_id": 1, "file_name": "1.png", "references": ["A red square.", "Red."]}
    refs2 = {"image_id": 2, "file_name": "2.png", "references": ["A blue square."]}
    assert list(read_coco_captions(path, mode="first", prompt="Caption:")) == [
        chat(user(one, "Caption:"), answer("A red square."), meta=refs1, source=f"{path}:images[0]"),
        chat(user(two, "Caption:"), answer("A blue square."), meta=refs2, source=f"{path}:images[1]"),
    ]
    assert list(read_coco_captions(path, mode="all")) == [
        chat(user(one), meta=refs1, source=f"{path}:images[0]"),
        chat(user(two), meta=refs2, source=f"{path}:images[1]"),
    ]
    with pytest.raises(ConfigError, match="mode"):
        read_coco_captions(path, mode="some")


def test_coco_missing_image_id_raises_or_skips(tmp_path):
    path = coco_fixture(tmp_path, [{"image_id": 1, "caption": "ok"}, {"image_id": 99, "caption": "orphan"},
                                   {"image_id": 2, "caption": "ok too"}])
    with pytest.raises(DataError, match=r"captions\.json:annotations\[1\]: image_id 99 is not in 'images'"):
        list(read_coco_captions(path))
    reader = read_coco_captions(path, on_error="skip")
    assert [s.turns[1].segments[0].text for s in reader] == ["ok", "ok too"] and reader.skipped == 1


# --- audio-caption CSV -----------------------------------------------------------------------
def test_audiocaps_layout_each_and_grouped(tmp_path):
    path = write(tmp_path / "audiocaps" / "val.csv", AUDIOCAPS_CSV)
    folder = tmp_path / "wavs"
    user = lambda name: ("user", [audio(folder / name), text("Describe the sound.")])  # noqa: E731
    meta = lambda i, y, t, **kw: {"audiocap_id": i, "youtube_id": y, "start_time": t, "file_name": f"{y}.wav", **kw}  # noqa: E731
    assert list(read_audio_captions(path, folder)) == [
        chat(user("abc.wav"), ("assistant", [text("A dog barks.")]), meta=meta("1", "abc", "0", caption_index=0),
             source=f"{path}:2"),
        chat(user("def.wav"), ("assistant", [text("Rain falls.")]), meta=meta("2", "def", "10", caption_index=0),
             source=f"{path}:3"),
        chat(user("abc.wav"), ("assistant", [text("Barking.")]), meta=meta("3", "abc", "0", caption_index=0),
             source=f"{path}:4"),
    ]
    assert list(read_audio_captions(path, folder, mode="first")) == [
        chat(user("abc.wav"), ("assistant", [text("A dog barks.")]),
             meta=meta("1", "abc", "0", references=["A dog barks.", "Barking."]), source=f"{path}:2"),
        chat(user("def.wav"), ("assistant", [text("Rain falls.")]),
             meta=meta("2", "def", "10", references=["Rain falls."]), source=f"{path}:3"),
    ]
    flac = next(iter(read_audio_captions(path, ext="flac")))
    assert flac.turns[0].segments[0].media == tmp_path / "audiocaps" / "abc.flac"


def test_audio_csv_explicit_file_column_wins(tmp_path):
    path = write(tmp_path / "c.csv", "youtube_id,audio,caption\nabc,clips/abc.mp3,Hum.\n")
    (sample,) = read_audio_captions(path)
    assert sample.turns[0].segments[0].media == tmp_path / "clips" / "abc.mp3"
    assert sample.meta["file_name"] == "clips/abc.mp3"


def test_clotho_layout_several_captions(tmp_path):
    path = write(tmp_path / "clotho.csv", CLOTHO_CSV)
    each = list(read_audio_captions(path))
    assert [(s.turns[0].segments[0].media.name, s.turns[1].segments[0].text, s.meta["caption_index"]) for s in each] == [
        ("x.wav", "One.", 0), ("x.wav", "Two.", 1), ("x.wav", "Ten.", 2),
        ("y.wav", "Uno.", 0), ("y.wav", "Dos.", 1), ("y.wav", "Diez.", 2),
    ]
    assert each[0].meta == {"file_name": "x.wav", "caption_index": 0} and each[3].source == f"{path}:3"
    (x, y) = read_audio_captions(path, mode="all")
    assert x == chat(("user", [audio(tmp_path / "x.wav"), text("Describe the sound.")]),
                     meta={"file_name": "x.wav", "references": ["One.", "Two.", "Ten."]}, source=f"{path}:2")
    assert y.meta["references"] == ["Uno.", "Dos.", "Diez."]


@pytest.mark.parametrize("csv_text, needle", [
    ("file_name,caption_1,caption_2\nx.wav,a,b\ny.wav,a,\nz.wav,a,b\n", r"clotho\.csv:3: empty 'caption_2' cell"),
    ("file_name,caption\nx.wav,a\n,b\nz.wav,c\n", r"clotho\.csv:3: empty 'file_name' cell"),
    ("file_name,caption\nx.wav,a\ny.wav\nz.wav,c\n", r"clotho\.csv:3: expected 2 cells, got 1"),
    (b"file_name,caption\nx.wav,a\ny.wav,\xff\nz.wav,c\n", r"clotho\.csv:3: not UTF-8"),
    ('file_name,caption\nx.wav,"two\nlines"\n,b\nz.wav,c\n', r"clotho\.csv:4: empty 'file_name' cell"),
])
def test_audio_csv_bad_row_raises_or_skips(tmp_path, csv_text, needle):
    path = write(tmp_path / "clotho.csv", csv_text)
    with pytest.raises(DataError, match=needle):
        list(read_audio_captions(path))
    reader = read_audio_captions(path, on_error="skip")
    assert [s.meta["file_name"] for s in reader][::-1][0] == "z.wav" and reader.skipped == 1


def test_audio_csv_bad_header(tmp_path):
    path = write(tmp_path / "h.csv", "file_name,text\nx.wav,a\n")
    with pytest.raises(DataError, match=r"h\.csv:1: no 'caption' or 'caption_<n>' column"):
        list(read_audio_captions(path))
    path = write(tmp_path / "h2.csv", "id,caption\n1,a\n")
    with pytest.raises(DataError, match=r"h2\.csv:1: no file column"):
        list(read_audio_captions(path))


# --- WebDataset shards -----------------------------------------------------------------------
def test_webdataset_rules_exact(tmp_path):
    path = shard_fixture(tmp_path)
    red, blue, wav = png_bytes(), png_bytes((0, 0, 255)), wav_bytes()
    shard = str(path)
    assert list(read_webdataset(path)) == [
        chat(("user", [image(red), text("Describe the image.")]), ("assistant", [text("A red square.")]),
             meta={"key": "s/000", "shard": shard}, source=f"{path}:s/000"),
        chat(("user", [audio(wav), text("Describe the sound.")]), ("assistant", [text("Silence.")]),
             meta={"key": "s/001", "shard": shard, "url": "u"}, source=f"{path}:s/001"),
        chat(("user", [image(red), text("Color?")]), ("assistant", [text("Red.")]),
             meta={"key": "s/002", "shard": shard, "id": 2}, source=f"{path}:s/002"),
        Sample([Turn(None, [image(red), text("then"), image(blue)])], {"key": "s/003", "shard": shard},
               f"{path}:s/003"),
        Sample([Turn(None, [text("Just text.")])], {"key": "s/004", "shard": shard}, f"{path}:s/004"),
    ]


def test_webdataset_media_by_kind_name(tmp_path):
    row = {"messages": [{"role": "user", "content": [{"type": "audio"}, {"type": "image", "image": "image"}]},
                        {"role": "assistant", "content": "ok"}]}
    path = write_tar(tmp_path / "k.tar", [("k.flac", b"F"), ("k.webp", b"W"), ("k.json", json.dumps(row).encode())])
    (sample,) = read_webdataset(path)
    assert [(s.type, s.media) for s in sample.media()] == [("audio", b"F"), ("image", b"W")]


@pytest.mark.parametrize("members, needle", [
    ([("bad.png", b"P")], r"has media \(\.png\) but no text"),
    ([("bad.png", b"P"), ("bad.wav", b"W"), ("bad.txt", b"c")], "both image and audio"),
    ([("bad.png", b"P"), ("bad.json", b'{"document": [{"type": "image", "image": "jpg"}]}')], "refers to .jpg"),
    ([("bad.png", b"P"), ("bad.json", b'{"document": "no image used"}')], "not used by the .json sample"),
    ([("bad.json", b"{oops")], "not valid JSON"),
])
def test_webdataset_bad_key_raises_or_skips(tmp_path, members, needle):
    path = write_tar(tmp_path / "shard.tar", [("ok.txt", b"fine"), *members, ("ok2.txt", b"fine too")])
    with pytest.raises(DataError, match=needle) as info:
        list(read_webdataset(path))
    assert "shard.tar:bad" in str(info.value)
    reader = read_webdataset(path, on_error="skip")
    assert [s.meta["key"] for s in reader] == ["ok", "ok2"] and reader.skipped == 1


def test_webdataset_corrupt_shard_and_glob(tmp_path):
    shard_fixture(tmp_path, "a-000.tar")
    shard_fixture(tmp_path, "a-001.tar")
    samples = list(read_webdataset(tmp_path / "a-*.tar"))
    assert [s.source.rsplit("/", 2)[-2] for s in samples] == ["a-000.tar:s"] * 5 + ["a-001.tar:s"] * 5
    bad = write(tmp_path / "junk.tar", b"not a tar at all" * 100)
    with pytest.raises(DataError, match=r"junk\.tar: unreadable tar"):
        list(read_webdataset(bad))
    whole = (tmp_path / "a-000.tar").read_bytes()
    cut = write(tmp_path / "cut.tar", whole[: len(whole) // 2])  # truncated inside a later key
    reader = read_webdataset(cut, on_error="skip")
    keys = [s.meta["key"] for s in reader]
    assert 0 < len(keys) < 5 and keys == [f"s/00{i}" for i in range(len(keys))]
    assert reader.skipped == 1 and "cut.tar: unreadable tar" in reader.errors[0]


def test_webdataset_compressed_shard(tmp_path):
    plain = shard_fixture(tmp_path)
    gz = write(tmp_path / "shard.tar.gz", gzip.compress(plain.read_bytes()))
    assert [s.turns for s in read_samples(gz)] == [s.turns for s in read_webdataset(plain)]


# --- read_samples ----------------------------------------------------------------------------
def test_read_samples_detects_every_format(tmp_path):
    cases = [
        (jsonl_fixture(tmp_path), JsonlReader, read_jsonl),
        (llava_fixture(tmp_path), LlavaReader, read_llava),
        (coco_fixture(tmp_path), CocoCaptionsReader, read_coco_captions),
        (write(tmp_path / "clotho.csv", CLOTHO_CSV), AudioCaptionsReader, read_audio_captions),
        (shard_fixture(tmp_path), WebDatasetReader, read_webdataset),
    ]
    for path, cls, direct in cases:
        reader = read_samples(path)
        assert type(reader) is cls
        assert list(reader) == list(direct(path))
    coco_all = read_samples(cases[2][0], mode="all", on_error="skip")
    assert coco_all.mode == "all" and coco_all.on_error == "skip"
    assert type(read_samples(cases[0][0], format="jsonl")) is JsonlReader


def test_read_samples_unknown_formats(tmp_path):
    with pytest.raises(DataError, match="unknown dataset format"):
        read_samples(write(tmp_path / "notes.txt", "hi"))
    with pytest.raises(DataError, match="unknown JSON dataset"):
        read_samples(write(tmp_path / "other.json", '{"rows": []}'))
    with pytest.raises(DataError, match="unknown JSON dataset"):
        read_samples(write(tmp_path / "list.json", "[1, 2]"))
    with pytest.raises(DataError, match="unknown dataset format 'parquet'"):
        read_samples(tmp_path / "other.json", format="parquet")
    write_jsonl(tmp_path / "mix" / "a.jsonl", [CHAT])
    write(tmp_path / "mix" / "b.csv", CLOTHO_CSV)
    with pytest.raises(DataError, match="different formats"):
        read_samples(tmp_path / "mix" / "*")
