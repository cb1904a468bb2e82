"""Row indexes: random access gives exactly the samples a pass gives, without holding them."""

from __future__ import annotations

import contextlib
import json

import pytest

from mmgpt.datasets.readers import read_coco_captions, read_jsonl, read_llava, read_samples
from mmgpt.datasets.readers.index import ArrayIndex, JsonlIndex, array_elements, raw_task
from mmgpt.errors import DataError
from tests.datasets.reader_fixtures import coco_fixture, jsonl_fixture, llava_fixture, write, write_jsonl


def doc(text, task=None, **meta):
    row = {"document": [{"type": "text", "text": text}], "meta": dict(meta)}
    if task is not None:
        row["meta"]["task"] = task
    return row


def test_jsonl_index_equals_a_pass_over_a_glob_of_files(tmp_path):
    a = jsonl_fixture(tmp_path)  # data/train.jsonl
    b = write_jsonl(a.parent / "b.jsonl", [doc("first file"), "", doc("after a blank line")])
    reader = read_samples(a.parent / "*.jsonl")
    index = reader.index()
    assert isinstance(index, JsonlIndex)
    passed = list(read_samples(a.parent / "*.jsonl"))
    assert len(index) == len(passed) > 3 and [index[i] for i in range(len(index))] == passed == list(index)
    assert index[1].source == f"{b}:3" and index[-1].source.startswith(f"{a}:")
    assert list(index[1:3]) == passed[1:3] and len(index[:2]) == 2
    with pytest.raises(IndexError):
        index[len(index)]


def test_jsonl_index_filters_tasks_from_raw_bytes_and_reports_a_bad_row_when_drawn(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [
        doc("a", task="image_qa"), doc("b", task="chat"), '{"document": "x", "meta": {"task": "image_qa"', doc("c"),
        {"task": "chat", "document": "top-level task"}, doc('says "task": "image_qa" in its text', task="chat"),
    ])
    index = read_jsonl(path).index({"image_qa"})
    assert len(index) == 2  # the broken row keeps its place: its task is readable
    assert index[0].text() == "a"
    with pytest.raises(DataError, match=r"t\.jsonl:3: invalid JSON"):
        index[1]
    chats = read_jsonl(path).index({"chat"})
    assert [s.text() for s in chats] == ["b", "top-level task", 'says "task": "image_qa" in its text']
    assert raw_task(b'{"meta": {"task": "a\\"b"}}') == 'a"b' and raw_task(b'{"document": "x"}') is None


def test_llava_index_equals_a_pass_and_skips_brackets_in_strings(tmp_path):
    path = llava_fixture(tmp_path)
    index = read_llava(path).index()
    assert isinstance(index, ArrayIndex) and list(index) == list(read_llava(path))
    tricky = write(tmp_path / "tricky.json", json.dumps([
        {"id": "a", "conversations": [{"from": "human", "value": 'braces } ] [ { and " quotes'},
                                      {"from": "gpt", "value": "ok"}]},
        {"id": "b", "conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "y"}]}], indent=2))
    index = read_llava(tricky).index()
    assert [s.meta["id"] for s in index] == ["a", "b"] and index[1].source == f"{tricky}[1]"
    assert index[0].turns[0].segments[0].text == 'braces } ] [ { and " quotes'
    with pytest.raises(DataError, match="must hold a JSON list"):
        array_elements(b'{"a": 1}', "x.json")
    with pytest.raises(DataError, match="truncated"):
        array_elements(b'[{"a": [1}', "x.json")


def test_formats_without_an_index_read_once_into_memory(tmp_path):
    path = coco_fixture(tmp_path)
    index = read_coco_captions(path).index()
    assert isinstance(index, list) and index == list(read_coco_captions(path))


def test_an_index_holds_offsets_not_samples(tmp_path):
    """200 k rows: the index is two arrays of 8-byte numbers; the rows are read when drawn."""
    rows = "".join(json.dumps(doc(f"row {i}", task="chat")) + "\n" for i in range(200_000))
    path = write(tmp_path / "big.jsonl", rows)
    index = read_jsonl(path).index({"chat"})
    assert len(index) == 200_000 and index.offsets.itemsize == index.lines.itemsize == 8
    assert index.offsets.buffer_info()[1] * 8 * 2 < 4 * 2**20
    assert index[123_456].text() == "row 123456" and index[123_456].source == f"{path}:123457"


def test_tar_index_equals_a_pass_and_reads_pax_and_gnu_long_names(tmp_path):
    import io
    import tarfile

    from mmgpt.datasets.readers import read_webdataset
    from mmgpt.datasets.readers.index import TarIndex, tar_members
    from tests.datasets.reader_fixtures import png_bytes, shard_fixture

    shard = shard_fixture(tmp_path)
    index = read_webdataset(shard, on_error="skip").index()
    assert isinstance(index, TarIndex)
    good = list(read_webdataset(shard, on_error="skip"))
    drawn = []
    for i in range(len(index)):
        with contextlib.suppress(DataError):
            drawn.append(index[i])
    assert drawn == good
    deep = "d" * 120 + "/key"  # longer than a ustar name field
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        path = tmp_path / f"long-{fmt}.tar"
        with tarfile.open(path, "w", format=fmt) as tar:
            for name, data in ((f"{deep}.png", png_bytes()), (f"{deep}.txt", b"a red square")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        (sample,) = list(read_webdataset(path).index())
        assert sample.meta["key"] == deep and sample.turns[1].segments[0].text == "a red square"
        assert next(sample.media()).media == png_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(shard.read_bytes()[: 3 * 512])  # the first member, then nothing
    with pytest.raises(DataError, match="truncated tar"):
        list(tar_members(io.BytesIO(cut.read_bytes()), "cut.tar"))
