"""mmgpt.datasets.media, audio: every file is made here, in tmp_path, and sample values are checked."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import soundfile as sf
import torch

from mmgpt.datasets import media
from mmgpt.datasets.media import (
    audio_duration,
    load_audio,
)
from mmgpt.errors import InvalidMediaError

SR = 16_000


def sine(freq: float = 440.0, seconds: float = 0.5, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.argmax(spectrum) * sr / len(x))


def test_stereo_wav_mixed_to_mean(tmp_path):
    left, right = sine(440), sine(1000, amp=0.25)
    path = tmp_path / "st.wav"
    sf.write(path, np.stack([left, right], axis=1), SR, subtype="FLOAT")
    out = load_audio(path)
    assert out.dtype == np.float32 and out.shape == (len(left),) and out.flags.c_contiguous
    np.testing.assert_allclose(out, (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize(
    ("subtype", "tol"),
    [("PCM_U8", 1 / 100), ("PCM_16", 1e-4), ("PCM_24", 1e-6), ("PCM_32", 1e-6), ("FLOAT", 1e-7), ("DOUBLE", 1e-7)],
)
def test_wav_bit_depths_scaled_to_unit_range(tmp_path, subtype, tol):
    x = sine(440, amp=0.9)
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, x, SR, subtype=subtype)
    out = load_audio(path)
    assert out.shape == x.shape
    np.testing.assert_allclose(out, x, atol=tol)
    assert 0.85 < np.abs(out).max() <= 1.0


@pytest.mark.parametrize(("fmt", "subtype", "tol"), [("FLAC", "PCM_16", 1e-4), ("OGG", "VORBIS", None)])
def test_flac_and_ogg(tmp_path, fmt, subtype, tol):
    x = sine(440)
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, x, SR, format=fmt, subtype=subtype)
    out = load_audio(path)
    assert len(out) == len(x)
    if tol is not None:
        np.testing.assert_allclose(out, x, atol=tol)
    assert abs(peak_hz(out, SR) - 440) <= 2
    assert abs(np.abs(out).max() - 0.5) < 0.05


def test_resample_length_frequency_and_log_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(media, "_logged_rates", set())
    caplog.set_level(logging.INFO, logger=media.__name__)
    path = tmp_path / "44k.wav"
    sf.write(path, sine(1000, seconds=1.0, sr=44_100), 44_100, subtype="PCM_16")
    out = load_audio(path)
    assert out.shape == (16_000,) and out.dtype == np.float32
    assert abs(peak_hz(out, SR) - 1000) <= 1
    load_audio(path)
    load_audio((sine(1000, sr=22_050), 22_050))
    messages = [r.getMessage() for r in caplog.records]
    assert sum("from 44100 Hz to 16000 Hz" in m for m in messages) == 1
    assert sum("from 22050 Hz to 16000 Hz" in m for m in messages) == 1


def test_resample_awkward_ratio():
    out = load_audio((sine(700, seconds=1.0, sr=22_051), 22_051))  # gcd 1: resampled by soxr
    assert abs(len(out) - 16_000) <= 1
    assert abs(peak_hz(out, SR) - 700) <= 1


def test_long_clip_returned_whole_and_max_seconds(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(40 * SR, np.float32) + 0.1, SR, subtype="PCM_16")
    assert load_audio(path).shape == (40 * SR,)
    assert load_audio(path, max_seconds=40).shape == (40 * SR,)
    with pytest.raises(InvalidMediaError, match=r"40\.00 s.*max_seconds=30"):
        load_audio(path, max_seconds=30)
    assert audio_duration(path) == pytest.approx(40.0)


def test_empty_nan_and_inf_audio(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), SR)
    with pytest.raises(InvalidMediaError, match=r"empty\.wav is empty"):
        load_audio(path)
    with pytest.raises(InvalidMediaError, match="empty"):
        audio_duration(path)
    with pytest.raises(InvalidMediaError, match="empty"):
        load_audio(np.zeros(0, np.float32))
    with pytest.raises(InvalidMediaError, match="10 non-finite"):
        load_audio(np.full(10, np.nan, np.float32))
    x = sine()
    x[100] = np.inf
    with pytest.raises(InvalidMediaError, match="1 non-finite"):
        load_audio(x)
    nan_wav = tmp_path / "nan.wav"
    y = sine()
    y[5] = np.nan
    sf.write(nan_wav, y, SR, subtype="FLOAT")
    with pytest.raises(InvalidMediaError, match=r"nan\.wav has 1 non-finite"):
        load_audio(nan_wav)


def test_truncated_wav_is_an_error(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, sine(), SR, subtype="PCM_16")
    data = good.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidMediaError, match=r"cut\.wav is truncated"):
        load_audio(cut)
    with pytest.raises(InvalidMediaError, match="truncated"):
        audio_duration(cut)
    with pytest.raises(InvalidMediaError, match="truncated"):
        load_audio(data[:-10])


def test_streamed_wav_with_unknown_length_is_read(tmp_path):
    """A WAV written to a pipe declares 0xFFFFFFFF bytes: not a truncation."""
    good = tmp_path / "good.wav"
    x = sine()
    sf.write(good, x, SR, subtype="PCM_16")
    data = bytearray(good.read_bytes())
    at = data.index(b"data") + 4
    data[at : at + 4] = b"\xff\xff\xff\xff"
    out = load_audio(bytes(data))
    np.testing.assert_allclose(out, x, atol=1e-4)


def test_corrupt_truncated_and_missing_audio_files(tmp_path):
    flac = tmp_path / "a.flac"
    sf.write(flac, sine(seconds=1.0), SR)
    cut = tmp_path / "cut.flac"
    cut.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    with pytest.raises(InvalidMediaError, match=r"cut\.flac"):
        load_audio(cut)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 400, dtype=np.uint8).tobytes())
    with pytest.raises(InvalidMediaError, match=r"junk\.wav cannot be decoded"):
        load_audio(junk)
    with pytest.raises(InvalidMediaError, match=r"nope\.wav not found"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(InvalidMediaError, match="not found"):
        audio_duration(str(tmp_path / "nope.wav"))


def test_librosa_fallback_when_soundfile_fails(tmp_path, monkeypatch):
    path = tmp_path / "a.wav"
    x = sine(seconds=0.25, sr=8000)
    sf.write(path, x, 8000, subtype="PCM_16")

    def broken(*args, **kwargs):
        raise RuntimeError("format not supported")

    monkeypatch.setattr(media, "_open_soundfile", broken)
    out = load_audio(path, sample_rate=8000)
    np.testing.assert_allclose(out, x, atol=1e-4)
    # no length to trust in such formats: decoding stops past the cap, never decodes it all
    with pytest.raises(InvalidMediaError, match=r"0\.25 s long, over the cap max_seconds=0\.1"):
        load_audio(path, sample_rate=8000, max_seconds=0.1)
    monkeypatch.setattr(media, "MAX_LIBROSA_SECONDS", 0.1)
    monkeypatch.setattr(media.sf, "info", broken)  # no header length either
    with pytest.raises(InvalidMediaError, match="at least 0 s long, over what mmgpt decodes"):
        media.audio_duration(path)


def test_integer_arrays_scaled():
    np.testing.assert_allclose(load_audio(np.array([-32768, 0, 16384], np.int16)), [-1, 0, 0.5])
    np.testing.assert_allclose(load_audio(np.array([-(2**31), 2**30], np.int32)), [-1, 0.5])
    np.testing.assert_allclose(load_audio(np.array([0, 128, 192], np.uint8)), [-1, 0, 0.5])
    np.testing.assert_allclose(load_audio(np.array([-128, 64], np.int8)), [-1, 0.5])
    with pytest.raises(InvalidMediaError, match="dtype int64"):
        load_audio(np.array([1, 2, 3], np.int64))


def test_array_channel_layouts():
    left, right = sine(440), sine(880)
    expected = (left + right) / 2
    np.testing.assert_allclose(load_audio(np.stack([left, right])), expected, atol=1e-6)  # (C, n)
    np.testing.assert_allclose(load_audio(np.stack([left, right], 1)), expected, atol=1e-6)  # (n, C)
    with pytest.raises(InvalidMediaError, match="neither axis"):
        load_audio(np.zeros((20, 30), np.float32))
    with pytest.raises(InvalidMediaError, match="3-D"):
        load_audio(np.zeros((1, 2, 30), np.float32))


def test_tuple_and_tensor_inputs():
    x = sine(440, seconds=0.5, sr=8000)
    out = load_audio((x, 8000))
    assert out.shape == (8000,) and abs(peak_hz(out, SR) - 440) <= 2
    np.testing.assert_allclose(load_audio(torch.from_numpy(sine())), sine(), atol=1e-7)
    stereo = torch.stack([torch.from_numpy(sine()), torch.zeros(len(sine()))]).to(torch.bfloat16)
    np.testing.assert_allclose(load_audio(stereo), sine() / 2, atol=1e-2)
    assert load_audio((torch.from_numpy(x), 8000)).shape == (8000,)
    assert load_audio((x, 8000.0)).shape == (8000,)
    for bad in [(x, -5), (x, 8000.5), (x, float("nan")), (x, "8000"), (x, 8000, 1)]:
        with pytest.raises(InvalidMediaError, match="pair"):
            load_audio(bad)
    assert audio_duration((x, 8000)) == pytest.approx(0.5)
    assert audio_duration(np.zeros(8000, np.float32)) == pytest.approx(0.5)


def test_bytes_and_file_like_audio(tmp_path):
    buf = io.BytesIO()
    sf.write(buf, sine(), SR, format="WAV", subtype="PCM_16")
    data = buf.getvalue()
    np.testing.assert_allclose(load_audio(data), sine(), atol=1e-4)
    np.testing.assert_allclose(load_audio(io.BytesIO(data)), sine(), atol=1e-4)
    assert audio_duration(data) == pytest.approx(0.5)
