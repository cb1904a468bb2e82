"""Inputs built to exhaust memory get a clear error while memory stays under a stated cap: a tar
bomb (a small .tar.gz declaring a huge member), audio whose length is over the cap (refused
from the header, decoding never starts), audio whose header lies about its length, compressed
shards too big to hold, and a 500 k-character prompt."""

from __future__ import annotations

import io
import logging
import struct
import tarfile
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from mmgpt.datasets import media
from mmgpt.datasets.readers import read_webdataset
from mmgpt.datasets.readers import webdataset as wds
from mmgpt.errors import DataError, InvalidMediaError

MiB = 2**20


class Zeros(io.RawIOBase):
    """``size`` zero bytes, produced as they are read (the bomb is never in memory here either)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def peak_mib(fn) -> tuple[object, float]:
    """``fn()``'s result (or exception) and the peak of Python allocations during it, in MiB."""
    tracemalloc.start()
    try:
        out = fn()
    except Exception as e:  # returned for the caller to check
        out = e
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, peak / MiB


def test_a_tar_bomb_is_a_bad_key_read_in_bounded_memory(tmp_path):
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz", compresslevel=1) as tar:
        for name, data in (("a.txt", b"before"), ("b.txt", None), ("c.txt", b"after")):
            info = tarfile.TarInfo(name)
            info.size = len(data) if data is not None else 300 * MiB
            tar.addfile(info, io.BytesIO(data) if data is not None else Zeros(info.size))
    assert bomb.stat().st_size < 2 * MiB  # 300 MiB declared
    got, peak = peak_mib(lambda: list(read_webdataset(bomb, on_error="skip")))
    assert [s.text() for s in got] == ["before", "after"]
    assert peak < 16, peak  # the member was skipped unread
    with pytest.raises(DataError, match=r"bomb.tar.gz:b: .txt member is 314,572,800 bytes, over the"):
        list(read_webdataset(bomb))


def test_a_huge_long_name_header_is_refused_unread(tmp_path):
    """tarfile reads GNU long-name and pax records whole: a 300 MiB one is refused from its header."""
    bomb = tmp_path / "names.tar.gz"
    with tarfile.open(bomb, "w:gz", compresslevel=1, format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("././@LongLink")
        info.type, info.size = tarfile.GNUTYPE_LONGNAME, 300 * MiB
        tar.addfile(info, Zeros(info.size))
        ok = tarfile.TarInfo("k.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"hi"))
    got, peak = peak_mib(lambda: list(read_webdataset(bomb, on_error="skip")))
    assert got == [] and peak < 16, peak
    with pytest.raises(DataError, match="314,572,800-byte name or pax header"):
        list(read_webdataset(bomb))
    plain = tmp_path / "names.tar"
    with tarfile.open(plain, "w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("././@LongLink")
        info.type, info.size = tarfile.GNUTYPE_LONGNAME, 2 * MiB
        tar.addfile(info, Zeros(info.size))
    with pytest.raises(DataError, match="2,097,152-byte name or pax header"):
        read_webdataset(plain).index()


def test_a_big_member_of_a_plain_tar_is_refused_from_its_index_unread(tmp_path, monkeypatch):
    monkeypatch.setattr(wds, "MAX_MEMBER_BYTES", 1 * MiB)
    shard = tmp_path / "s.tar"
    with tarfile.open(shard, "w") as tar:
        for name, size in (("k1.txt", 5), ("k2.txt", 3 * MiB)):
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BytesIO(b"x" * size))
    index = read_webdataset(shard).index()
    assert index[0].text() == "xxxxx"
    got, peak = peak_mib(lambda: index[1])
    assert isinstance(got, DataError) and "3,145,728 bytes, over the 1,048,576-byte cap" in str(got)
    assert peak < 1, peak


def test_compressed_shards_too_big_to_hold_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(wds, "MAX_IN_MEMORY_BYTES", 10_000)
    shard = tmp_path / "s.tar.gz"
    png = io.BytesIO()
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(png, "PNG")
    with tarfile.open(shard, "w:gz") as tar:
        for i in range(4):
            for ext, data in (("png", png.getvalue()), ("txt", b"noise")):
                info = tarfile.TarInfo(f"{i}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DataError, match="train on them streamed"):
        read_webdataset(shard).index()


def test_audio_over_the_cap_is_refused_from_its_header_before_decoding(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros((48_000 * 60, 2), dtype=np.float32), 48_000, subtype="FLOAT")  # 60 s, 22 MiB
    got, peak = peak_mib(lambda: media.load_audio(path, max_seconds=5))
    assert isinstance(got, InvalidMediaError) and "60.00 s long, over the cap max_seconds=5" in str(got)
    assert peak < 2, peak
    assert media.audio_duration(path) == 60.0


def test_audio_whose_header_lies_is_an_error_or_read_no_further_than_the_cap(tmp_path, monkeypatch):
    # a WAV declaring 1 GB of samples with 1 s present
    good = io.BytesIO()
    sf.write(good, np.zeros(16_000, dtype=np.int16), 16_000, format="WAV", subtype="PCM_16")
    raw = bytearray(good.getvalue())
    at = raw.index(b"data") + 4
    raw[at:at + 4] = struct.pack("<I", 10**9)
    with pytest.raises(InvalidMediaError, match="truncated: its header declares 1000000000 bytes"):
        media.load_audio(bytes(raw))
    # a stream whose header gives no length (a pipe's WAV): reading stops one frame past the cap
    monkeypatch.setattr(media, "MAX_AUDIO_SAMPLES", 8_000)
    raw[at:at + 4] = struct.pack("<I", 0xFFFFFFFF)
    with pytest.raises(InvalidMediaError, match="over the 8,000 samples mmgpt decodes at most"):
        media.load_audio(bytes(raw))


def test_a_500k_character_prompt_is_cut_to_the_context_in_bounded_memory(tiny_model, caplog):
    text = "word " * 100_000
    with caplog.at_level(logging.WARNING):
        got, peak = peak_mib(lambda: tiny_model.chat([{"role": "user", "content": text}], max_new_tokens=2))
    assert isinstance(got, str)
    assert "exceed the context" in caplog.text and "dropped" in caplog.text
    assert peak < 64, peak
