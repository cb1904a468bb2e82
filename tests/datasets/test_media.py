"""Tests for mmgpt.datasets.media: every file is made here, in tmp_path, and values are checked."""

from __future__ import annotations

import io
import logging
import struct
import zlib

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image, ImageFile

from mmgpt.datasets import media
from mmgpt.datasets.media import (
    audio_duration,
    describe_source,
    image_size,
    load_audio,
    load_image,
)
from mmgpt.errors import InvalidMediaError

SR = 16_000


def px(im: Image.Image, x: int, y: int) -> tuple[int, ...]:
    return tuple(int(v) for v in im.getpixel((x, y)))


def close(a: tuple[int, ...], b: tuple[int, ...], tol: int) -> bool:
    return all(abs(p - q) <= tol for p, q in zip(a, b, strict=True))


# ----------------------------------------------------------------------------- images


def test_exif_orientation_rotates_pixels(tmp_path):
    im = Image.new("RGB", (4, 2), (0, 0, 0))
    im.putpixel((0, 0), (255, 0, 0))  # red top-left of a landscape 4x2
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rot.png"
    im.save(path, exif=exif)

    out = load_image(path)
    assert out.mode == "RGB" and out.size == (2, 4)
    assert px(out, 1, 0) == (255, 0, 0)  # the top-left corner went to the top-right
    assert px(out, 0, 0) == (0, 0, 0)
    assert image_size(path) == (2, 4)


def test_exif_orientation_jpeg(tmp_path):
    im = Image.new("RGB", (32, 16), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 8, 8))  # white block top-left
    exif = Image.Exif()
    exif[0x0112] = 3  # rotate 180
    path = tmp_path / "rot.jpg"
    im.save(path, exif=exif, quality=95)
    out = load_image(path)
    assert out.size == (32, 16)
    assert close(px(out, 28, 12), (255, 255, 255), 20)  # now bottom-right
    assert close(px(out, 3, 3), (0, 0, 0), 20)


def test_rgba_transparent_region_is_white(tmp_path):
    a = np.zeros((8, 8, 4), np.uint8)
    a[..., 0] = 200  # red-ish everywhere, ...
    a[:, 4:, 3] = 255  # ... but only the right half opaque
    path = tmp_path / "rgba.png"
    Image.fromarray(a).save(path)
    out = load_image(path)
    assert out.mode == "RGB"
    assert px(out, 1, 1) == (255, 255, 255)
    assert px(out, 6, 1) == (200, 0, 0)


def test_la_composited_on_white(tmp_path):
    im = Image.new("LA", (4, 4), (0, 0))  # black, transparent
    im.putpixel((3, 3), (0, 255))  # one opaque black pixel
    path = tmp_path / "la.png"
    im.save(path)
    out = load_image(path)
    assert px(out, 0, 0) == (255, 255, 255)
    assert px(out, 3, 3) == (0, 0, 0)


def test_palette_with_transparency_and_plain_palette(tmp_path):
    im = Image.new("P", (4, 4), 0)
    im.putpalette([0, 0, 255, 0, 255, 0] + [0] * (256 * 3 - 6))
    im.putpixel((3, 3), 1)
    plain = tmp_path / "p.png"
    im.save(plain)
    out = load_image(plain)
    assert px(out, 0, 0) == (0, 0, 255) and px(out, 3, 3) == (0, 255, 0)

    trans = tmp_path / "pt.png"
    im.save(trans, transparency=0)  # palette index 0 (blue) is see-through
    assert "transparency" in Image.open(trans).info
    out = load_image(trans)
    assert px(out, 0, 0) == (255, 255, 255) and px(out, 3, 3) == (0, 255, 0)


def test_16bit_png_scaled_not_clipped(tmp_path):
    a = np.array([[0, 32768, 65535, 255]], np.uint16)
    path = tmp_path / "16.png"
    Image.fromarray(a).save(path)
    assert Image.open(path).mode == "I;16"
    out = np.asarray(load_image(path))
    assert out.shape == (1, 4, 3)
    assert out[0, :, 0].tolist() == [0, 128, 255, 1]  # convert("L") would give 0, 255, 255, 255
    assert (out[..., 0] == out[..., 2]).all()


@pytest.mark.parametrize("mode", ["I;16B", "I"])
def test_other_16bit_modes(mode):
    a = np.array([[0, 32768, 65535]], np.uint16)
    im = Image.fromarray(a).convert(mode) if mode == "I" else Image.fromarray(a.astype(">u2"))
    assert im.mode == mode
    assert np.asarray(load_image(im))[0, :, 1].tolist() == [0, 128, 255]


def test_float_mode_and_arrays():
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert unit.mode == "F"
    assert np.asarray(load_image(unit))[0, :, 0].tolist() == [0, 128, 255]
    wide = Image.fromarray(np.array([[10.0, 20.0, 30.0]], np.float32))  # max > 1: min-max
    assert np.asarray(load_image(wide))[0, :, 0].tolist() == [0, 128, 255]
    rgb = np.zeros((2, 2, 3), np.float64)
    rgb[..., 1] = 1.0
    assert px(load_image(rgb), 0, 0) == (0, 255, 0)
    with pytest.raises(InvalidMediaError, match="NaN"):
        load_image(np.full((2, 2), np.nan, np.float32))


def test_numpy_arrays():
    u16 = np.array([[0, 32768, 65535]], np.uint16)
    assert np.asarray(load_image(u16))[0, :, 0].tolist() == [0, 128, 255]
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)
    out = load_image(rgba)
    assert px(out, 0, 0) == (10, 20, 30) and px(out, 1, 1) == (255, 255, 255)
    assert px(load_image(np.array([[True, False]])), 0, 0) == (255, 255, 255)
    assert px(load_image(np.array([[7, 200]])), 1, 0) == (200, 200, 200)  # int64 in 0..255
    with pytest.raises(InvalidMediaError, match=r"outside 0\.\.255"):
        load_image(np.array([[0, 1000]], np.int32))
    with pytest.raises(InvalidMediaError, match="shape"):
        load_image(np.zeros((2, 2, 5), np.uint8))


def test_zero_size_image():
    with pytest.raises(InvalidMediaError, match="zero size"):
        load_image(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(InvalidMediaError, match="zero size"):
        load_image(Image.new("RGB", (0, 0)))


def test_cmyk_jpeg_l_and_1bit(tmp_path):
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(tmp_path / "c.jpg")  # pure cyan
    out = load_image(tmp_path / "c.jpg")
    assert out.mode == "RGB" and close(px(out, 4, 4), (0, 255, 255), 8)

    Image.new("L", (4, 4), 100).save(tmp_path / "l.png")
    assert px(load_image(tmp_path / "l.png"), 0, 0) == (100, 100, 100)

    bw = Image.new("1", (4, 4), 0)
    bw.putpixel((2, 2), 1)
    bw.save(tmp_path / "b.png")
    out = load_image(tmp_path / "b.png")
    assert px(out, 0, 0) == (0, 0, 0) and px(out, 2, 2) == (255, 255, 255)

    ycc = Image.new("RGB", (4, 4), (255, 0, 0)).convert("YCbCr")
    assert close(px(load_image(ycc), 0, 0), (255, 0, 0), 3)


def test_bytes_file_like_and_pil_inputs(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (3, 2), (1, 2, 3)).save(buf, format="PNG")
    data = buf.getvalue()
    assert px(load_image(data), 0, 0) == (1, 2, 3)
    assert px(load_image(io.BytesIO(data)), 2, 1) == (1, 2, 3)
    assert image_size(data) == (3, 2)
    src = Image.new("RGB", (3, 2), (4, 5, 6))
    out = load_image(src)
    assert out is not src and px(out, 0, 0) == (4, 5, 6)


def test_pixel_cap_checked_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (200, 200), (9, 9, 9)).save(path)
    calls = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: calls.append(1) or real_load(self))
    with pytest.raises(InvalidMediaError, match=r"200x200.*max_pixels=1,000") as err:
        load_image(path, max_pixels=1000)
    assert str(path) in str(err.value)
    assert calls == []  # no pixel was decoded
    assert load_image(path, max_pixels=40_000).size == (200, 200)
    assert calls  # the spy does see decoding


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming width x height RGB whose pixel data stops, cut, after one row."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    z = zlib.compressobj()
    idat = z.compress(bytes(1 + 3 * width)) + z.flush(zlib.Z_SYNC_FLUSH)  # stream not ended
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)


def test_pixel_cap_on_header_claiming_huge_size(tmp_path):
    path = tmp_path / "liar.png"
    path.write_bytes(png_header_only(5000, 5000))
    with pytest.raises(InvalidMediaError, match="cap max_pixels"):
        load_image(path, max_pixels=1_000_000)
    with pytest.raises(InvalidMediaError, match="truncated or corrupt"):
        load_image(path)  # under the cap: decoding starts and finds no data
    assert image_size(path) == (5000, 5000)


def test_pillow_bomb_guard_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    for side in (12, 20):  # 144 px: Pillow warns; 400 px (> 2x): Pillow raises
        path = tmp_path / f"{side}.png"
        Image.new("RGB", (side, side)).save(path)
        with pytest.raises(InvalidMediaError, match="bomb"):
            load_image(path)
        with pytest.raises(InvalidMediaError, match="bomb"):
            image_size(path)


def test_truncated_corrupt_empty_and_missing_images(tmp_path):
    rng = np.random.default_rng(0)
    good = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    cut = tmp_path / "cut.png"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidMediaError, match="truncated") as err:
        load_image(cut)
    assert str(cut) in str(err.value)

    junk = tmp_path / "junk.png"
    junk.write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(InvalidMediaError, match=r"junk\.png"):
        load_image(junk)
    with pytest.raises(InvalidMediaError, match="<bytes 11>"):
        load_image(b"hello world")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InvalidMediaError, match=r"empty\.png"):
        load_image(empty)
    with pytest.raises(InvalidMediaError, match=r"nope\.png not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InvalidMediaError, match="not found"):
        image_size(str(tmp_path / "nope.png"))
    with pytest.raises(InvalidMediaError, match="unsupported"):
        load_image(42)


def test_describe_source(tmp_path):
    assert describe_source(tmp_path / "a.png") == str(tmp_path / "a.png")
    assert describe_source(b"1234") == "<bytes 4>"
    assert describe_source(Image.new("RGB", (64, 32))) == "<PIL image 64x32>"
    assert describe_source(np.zeros((2, 3), np.uint8)) == "<array (2, 3) uint8>"
    assert describe_source(torch.zeros(5)) == "<tensor (5,) float32>"
    assert describe_source((np.zeros(5), 8000)) == "<waveform (5,) at 8000 Hz>"
    assert describe_source(io.BytesIO()) == "<file-like BytesIO>"


# ----------------------------------------------------------------------------- audio


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

    monkeypatch.setattr(media.sf, "read", broken)
    out = load_audio(path, sample_rate=8000)
    np.testing.assert_allclose(out, x, atol=1e-4)


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
