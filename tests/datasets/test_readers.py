"""Tests of mmgpt.datasets.readers (JSONL, LLaVA, COCO, format detection): exact samples from tiny fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
from mmgpt.datasets.schema import Sample, Turn
from mmgpt.errors import ConfigError, DataError
from tests.datasets.reader_fixtures import (
    CHAT,
    CLOTHO_CSV,
    audio,
    chat,
    coco_fixture,
    image,
    jsonl_fixture,
    llava_fixture,
    raises_then_skips,
    shard_fixture,
    text,
    write,
    write_jsonl,
)


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
    _, kept = raises_then_skips(read_jsonl, path, r"bytes\.jsonl:2: not UTF-8")
    assert [s.text() for s in kept] == ["a", "c"]


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


def test_shard_ranges_and_alternatives_name_files(tmp_path):
    from mmgpt.datasets.readers.base import expand_braces

    assert expand_braces("s-{008..011}.tar") == ["s-008.tar", "s-009.tar", "s-010.tar", "s-011.tar"]
    assert expand_braces("{a,b}-{1..2}") == ["a-1", "a-2", "b-1", "b-2"]
    assert expand_braces("{9..7}") == ["9", "8", "7"] and expand_braces("no{braces}") == ["no{braces}"]
    for i in range(3):
        write_jsonl(tmp_path / f"part-{i:03d}.jsonl", [{"document": f"row {i}"}])
    reader = read_jsonl(tmp_path / "part-{001..002}.jsonl")
    assert reader.paths == [tmp_path / "part-001.jsonl", tmp_path / "part-002.jsonl"]
    assert [s.text() for s in reader] == ["row 1", "row 2"]
    with pytest.raises(DataError, match=r"1 of the 3 files it names do not exist.*part-003"):
        read_jsonl(tmp_path / "part-{001..003}.jsonl")


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


def test_llava_media_folder(tmp_path):
    path = llava_fixture(tmp_path)
    (tmp_path / "elsewhere").mkdir(exist_ok=True)
    first = next(iter(read_llava(path, media_folder=tmp_path / "elsewhere")))
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
    error, kept = raises_then_skips(read_llava, path, needle)
    assert "bad.json[1] (id 'x')" in error
    assert [s.meta["id"] for s in kept] == ["g", "g"]


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
    _, kept = raises_then_skips(read_coco_captions, path,
                                r"captions\.json:annotations\[1\]: image_id 99 is not in 'images'")
    assert [s.turns[1].segments[0].text for s in kept] == ["ok", "ok too"]


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
