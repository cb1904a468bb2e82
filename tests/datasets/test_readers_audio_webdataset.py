"""Tests of mmgpt.datasets.readers (audio-caption CSV, WebDataset shards): exact samples from tiny fixtures."""

from __future__ import annotations

import gzip
import json

import pytest

from mmgpt.datasets.readers import (
    read_audio_captions,
    read_samples,
    read_webdataset,
)
from mmgpt.datasets.schema import Sample, Turn
from mmgpt.errors import DataError
from tests.datasets.reader_fixtures import (
    AUDIOCAPS_CSV,
    CLOTHO_CSV,
    audio,
    chat,
    image,
    png_bytes,
    raises_then_skips,
    shard_fixture,
    text,
    wav_bytes,
    write,
    write_tar,
)


# --- audio-caption CSV -----------------------------------------------------------------------
def test_audiocaps_layout_each_and_grouped(tmp_path):
    path = write(tmp_path / "audiocaps" / "val.csv", AUDIOCAPS_CSV)
    folder = tmp_path / "wavs"
    folder.mkdir()
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
    _, kept = raises_then_skips(read_audio_captions, path, needle)
    assert [s.meta["file_name"] for s in kept][::-1][0] == "z.wav"


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
    error, kept = raises_then_skips(read_webdataset, path, needle)
    assert "shard.tar:bad" in error
    assert [s.meta["key"] for s in kept] == ["ok", "ok2"]


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


