"""mmgpt.datasets.media, images: every file is made here, in tmp_path, and pixel values are checked."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from mmgpt.datasets.media import (
    describe_source,
    image_size,
    load_image,
)
from mmgpt.errors import InvalidMediaError


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


