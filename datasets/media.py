"""Safe decoding of images and audio: clean data out, or an ``InvalidMediaError`` naming the source.

Images (:func:`load_image`) come out as fully loaded ``"RGB"`` PIL images. The header's pixel
count is checked against ``max_pixels`` before any pixel is decoded (Pillow's bomb guard stays
on, its warning an error too). EXIF orientation is applied. Transparency (RGBA, LA, PA, or a
``transparency`` key as in palette images) is composited on white. 16-bit grey (``I;16*``, and
``I`` within 0..65535) is divided by 257, 65535 -> 255, where ``convert("L")`` would clip all
above 255 to white; wider ``I`` is min-max scaled; ``F`` is scaled from [0, 1] if its max is
<= 1, else from [min, max]. Other modes (CMYK, L, 1, P, YCbCr, ...) go through
``convert("RGB")``. Numpy images ``(H, W)``, ``(H, W, 3)``, ``(H, W, 4)`` follow the same rules:
uint8 as is, uint16 / 257, float as ``F``, bool as 0 / 255, other integers only in 0..255.

Audio (:func:`load_audio`) comes out as a contiguous float32 mono waveform ``(n,)``. Files are
read with soundfile (libsndfile scales integer PCM of any width to [-1, 1]), else with
``librosa.load``. A WAV whose ``data`` chunk is shorter than its header declares is an error,
not a short clip (libsndfile would quietly return the part present). Channels are averaged;
in a 2-D array the smaller axis, if <= 8, is channels. Integer arrays are scaled: int8 / 128,
int16 / 32768, int32 / 2**31, uint8 as (x - 128) / 128; floats are kept as they are (not
clipped). Other rates are resampled, with one log line per source rate. Empty audio, any NaN
or inf, or a duration above ``max_seconds`` is an error; long audio is otherwise returned
whole: the audio encoder chunks it, this module never cuts it.

Shape legend: H, W image height and width; C channels; n samples.
"""

from __future__ import annotations

import io
import logging
import math
import os
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from PIL import Image, ImageOps, PngImagePlugin

from mmgpt.errors import InvalidMediaError

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 64_000_000
SAMPLE_RATE = 16_000
MAX_CHANNELS = 8  # a 2-D audio array's axis no longer than this is channels
MAX_AUDIO_SAMPLES = 1 << 28  # samples (frames x channels) decoded at most from a file: 1 GiB of float32
MAX_LIBROSA_SECONDS = 3600.0  # formats libsndfile lacks carry no trusted length: decoding stops here

_ORIENTATION = 0x0112  # EXIF tag; values 5..8 swap width and height
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_INT_IMAGE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
# torchaudio builds a (new, orig) kernel for the gcd-reduced rates: fine for 44100 -> 16000
# (441 x 160), but 26 s for 5 s of 44101 Hz audio (gcd 1), which soxr resamples in 1 ms.
_MAX_REDUCED_RATE = 1000
_logged_rates: set[tuple[int, int]] = set()


def describe_source(src: Any) -> str:
    """A short name for a media source in messages: the path, or e.g. ``'<bytes 1234>'``.

    Args:
        src: anything :func:`load_image` or :func:`load_audio` accepts.

    Returns:
        The name.
    """
    if isinstance(src, str | os.PathLike):
        return str(Path(src))
    if isinstance(src, bytes | bytearray):
        return f"<bytes {len(src)}>"
    if isinstance(src, Image.Image):
        return f"<PIL image {src.width}x{src.height}>"
    if isinstance(src, np.ndarray | torch.Tensor):
        kind = "array" if isinstance(src, np.ndarray) else "tensor"
        return f"<{kind} {tuple(src.shape)} {str(src.dtype).removeprefix('torch.')}>"
    if isinstance(src, tuple) and len(src) == 2:
        return f"<waveform {tuple(getattr(src[0], 'shape', ()))} at {src[1]} Hz>"
    if hasattr(src, "read"):
        name = getattr(src, "name", None)
        return name if isinstance(name, str) else f"<file-like {type(src).__name__}>"
    return f"<{type(src).__name__}>"


def _file_source(src: Any, what: str, name: str) -> Any:
    """A path (checked to exist) or a binary file object for the decoders."""
    if isinstance(src, str | os.PathLike):
        path = Path(src)
        if not path.is_file():
            problem = "is a directory" if path.is_dir() else "not found"
            raise InvalidMediaError(f"{what} file {name} {problem}")
        return path
    if isinstance(src, bytes | bytearray):
        return io.BytesIO(bytes(src))
    if hasattr(src, "read"):
        return src
    raise InvalidMediaError(f"unsupported {what} source {name}")


# ----------------------------------------------------------------------------- images


def _check_size(w: int, h: int, name: str, max_pixels: int) -> None:
    if w <= 0 or h <= 0:
        raise InvalidMediaError(f"image {name} has zero size {w}x{h}")
    if w * h > max_pixels:
        raise InvalidMediaError(f"image {name} is {w}x{h} = {w * h:,} pixels, over the cap max_pixels={max_pixels:,}")


def _open_image(src: Any, name: str) -> Image.Image:
    """Open lazily: Pillow reads the header (size, mode, EXIF) but no pixel data yet."""
    fp = _file_source(src, "image", name)
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; a bomb is a bomb.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(fp)
    except Exception as e:  # Pillow's bomb messages say "decompression bomb"
        raise InvalidMediaError(f"image {name} cannot be decoded: {e}") from e


def _to_uint8(a: np.ndarray, name: str) -> np.ndarray:
    """Scale wide integer or float pixels to uint8 by their range, never by clipping."""
    x = a.astype(np.float64)
    if not np.isfinite(x).all():
        raise InvalidMediaError(f"image {name} has NaN or inf pixel values")
    lo, hi = float(x.min()), float(x.max())
    if a.dtype.kind in "iu" and lo >= 0 and hi <= 65535:
        x = x / 257.0  # 16-bit depth: 65535 -> 255
    elif a.dtype.kind == "f" and hi <= 1.0:
        x = np.clip(x, 0.0, 1.0) * 255.0
    else:  # wider than 16 bits, negative, or float beyond 1: the values' own range
        x = (x - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(x)
    return np.rint(x).astype(np.uint8)


def _image_from_array(a: np.ndarray, name: str, max_pixels: int) -> Image.Image:
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise InvalidMediaError(f"image {name}: expected shape (H, W), (H, W, 3) or (H, W, 4)")
    _check_size(a.shape[1], a.shape[0], name, max_pixels)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif (a.dtype.kind == "u" and a.dtype.itemsize == 2) or a.dtype.kind == "f":
        a = _to_uint8(a, name)
    elif a.dtype.kind in "iu" and a.dtype != np.uint8:
        if a.min() < 0 or a.max() > 255:
            raise InvalidMediaError(f"image {name}: {a.dtype} values outside 0..255; pass uint8, uint16 or float")
        a = a.astype(np.uint8)
    elif a.dtype != np.uint8:
        raise InvalidMediaError(f"image {name}: unsupported dtype {a.dtype}")
    return Image.fromarray(np.ascontiguousarray(a))  # (H, W) L, (H, W, 3) RGB, (H, W, 4) RGBA


def _to_rgb(im: Image.Image, name: str) -> Image.Image:
    if im.mode in _INT_IMAGE_MODES or im.mode == "F":
        return Image.fromarray(_to_uint8(np.asarray(im), name)).convert("RGB")
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        # White, not black: documents, icons and diagrams are drawn for a white page.
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im.convert("RGBA")).convert("RGB")
    return im.convert("RGB")


def load_image(src: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode an image safely into a fully loaded RGB PIL image.

    Args:
        src: a path, bytes, a binary file object, a PIL image, or a numpy array
            ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` of uint8, uint16 or float.
        max_pixels: the largest width * height accepted, checked before decoding.

    Returns:
        A new ``"RGB"`` image with EXIF orientation applied (the source is not modified).

    Raises:
        InvalidMediaError: the source is missing, empty, truncated, corrupt, of zero size,
            over ``max_pixels`` or Pillow's bomb guard, or of an unsupported type or dtype.
    """
    name = describe_source(src)
    if isinstance(src, np.ndarray):
        im = _image_from_array(src, name, max_pixels)
    else:
        im = src if isinstance(src, Image.Image) else _open_image(src, name)
    try:
        _check_size(im.width, im.height, name, max_pixels)
        im.load()  # inside the try: truncation only shows when the pixels are read
        return _to_rgb(ImageOps.exif_transpose(im), name)
    except InvalidMediaError:
        raise
    except Exception as e:
        raise InvalidMediaError(f"image {name} is truncated or corrupt: {e}") from e
    finally:
        if im is not src:
            im.close()


def image_size(src: Any) -> tuple[int, int]:
    """The ``(width, height)`` :func:`load_image` would return, from the header only.

    Args:
        src: as for :func:`load_image`.

    Returns:
        ``(width, height)`` after EXIF orientation.

    Raises:
        InvalidMediaError: as for :func:`load_image`, bar truncation and ``max_pixels``.
    """
    name = describe_source(src)
    if isinstance(src, np.ndarray):
        return load_image(src, max_pixels=src.size or 1).size  # in memory: no header to read
    im = src if isinstance(src, Image.Image) else _open_image(src, name)
    try:
        _check_size(im.width, im.height, name, max(im.width * im.height, 1))
        # A PNG with its eXIf chunk after the pixels would be decoded to find it: skip that.
        lazy_png = isinstance(im, PngImagePlugin.PngImageFile) and "exif" not in im.info
        try:
            orientation = None if lazy_png else im.getexif().get(_ORIENTATION)
        except Exception as e:
            raise InvalidMediaError(f"image {name} has corrupt EXIF data: {e}") from e
        return (im.height, im.width) if orientation in (5, 6, 7, 8) else im.size
    finally:
        if im is not src:
            im.close()


# ----------------------------------------------------------------------------- audio


def _tell(fp: Any) -> int | None:
    return fp.tell() if hasattr(fp, "seekable") and fp.seekable() else None


def _rewind(fp: Any, start: int | None) -> None:
    """Put a caller's file back where it was, for the next decoder to try."""
    if start is not None:
        fp.seek(start)


def _check_wav_complete(src: Any, name: str) -> None:
    """Raise if a RIFF/WAVE ``data`` chunk is shorter than its header declares.

    Streamed WAVs declare 0 or 0xFFFFFFFF bytes (length unknown) and are not checked.
    """
    if isinstance(src, Path):
        with open(src, "rb") as fh:
            return _check_wav_complete(fh, name)
    if (start := _tell(src)) is None:
        return
    try:
        total = src.seek(0, os.SEEK_END)
        src.seek(start)
        head = src.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
            return
        while len(chunk := src.read(8)) == 8:
            size = struct.unpack("<I", chunk[4:])[0]
            if chunk[:4] == b"data":
                present = total - src.tell()
                if size not in (0, 0xFFFFFFFF) and size > present:
                    raise InvalidMediaError(
                        f"audio {name} is truncated: its header declares {size} bytes of samples, {present} are present"
                    )
                return
            src.seek(size + (size & 1), os.SEEK_CUR)  # chunks are padded to even sizes
    finally:
        _rewind(src, start)


def _check_length(name: str, frames: int, sr: int, channels: int, max_seconds: float | None) -> None:
    """Refuse a clip over ``max_seconds`` or over :data:`MAX_AUDIO_SAMPLES` in all (header or decoded)."""
    if max_seconds is not None and frames / sr > max_seconds:
        raise InvalidMediaError(f"audio {name} is {frames / sr:.2f} s long, over the cap max_seconds={max_seconds}")
    if frames * channels > MAX_AUDIO_SAMPLES:
        raise InvalidMediaError(f"audio {name} has {frames:,} frames x {channels} channels, over the "
                                f"{MAX_AUDIO_SAMPLES:,} samples mmgpt decodes at most")


def _open_soundfile(fp: Any) -> sf.SoundFile:
    """libsndfile's reader (its own function, so tests can make it fail and reach librosa)."""
    return sf.SoundFile(fp)


def _decode_audio_file(src: Any, name: str, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decode a file with libsndfile (librosa for other formats), never more than the cap: the
    header's length is checked first, and reading stops one frame past the cap whatever the
    header says."""
    fp = _file_source(src, "audio", name)
    _check_wav_complete(fp, name)
    start = _tell(fp)
    try:
        with _open_soundfile(fp) as f:
            sr, channels = int(f.samplerate), int(f.channels)
            _check_length(name, f.frames, sr, channels, max_seconds)
            cap = MAX_AUDIO_SAMPLES // channels if max_seconds is None else math.ceil(max_seconds * sr)
            data = f.read(frames=min(cap, MAX_AUDIO_SAMPLES // channels) + 1, dtype="float32", always_2d=True)
    except InvalidMediaError:
        raise
    except Exception as sf_error:
        _rewind(fp, start)
        seconds = max_seconds + 1.0 if max_seconds is not None else MAX_LIBROSA_SECONDS
        try:
            import librosa  # slow to import; only needed for formats libsndfile lacks

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # its "trying audioread instead" notices
                wave, sr = librosa.load(fp, sr=None, mono=False, duration=seconds)  # stops decoding there
        except Exception as e:
            raise InvalidMediaError(f"audio {name} cannot be decoded (soundfile: {sf_error}; librosa: {e})") from e
        wave = np.atleast_2d(wave)
        if max_seconds is None and wave.shape[1] >= int(seconds * sr):
            raise InvalidMediaError(f"audio {name} is at least {seconds:.0f} s long, over what mmgpt decodes "
                                    "from formats libsndfile does not read") from None
        _check_length(name, wave.shape[1], int(sr), wave.shape[0], max_seconds)
        return wave, int(sr)  # (C, n)
    _check_length(name, data.shape[0], sr, channels, max_seconds)
    return data.T, sr  # (C, n)


def _to_channels(x: Any, name: str) -> np.ndarray:
    """An in-memory waveform as float32 ``(C, n)``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = (x.float() if x.is_floating_point() else x).numpy()  # numpy has no bfloat16
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None]  # (1, n)
    elif x.ndim == 2:
        if x.shape[0] > x.shape[1] or x.shape[0] > MAX_CHANNELS:
            if x.shape[1] > MAX_CHANNELS:
                raise InvalidMediaError(f"audio {name}: neither axis of shape {x.shape} is <= {MAX_CHANNELS} channels")
            x = x.T  # (n, C) -> (C, n)
    else:
        raise InvalidMediaError(f"audio {name}: expected a 1-D or 2-D waveform, got {x.ndim}-D")
    if x.dtype.kind == "f":
        return x.astype(np.float32)
    if x.dtype == np.uint8:
        return (x.astype(np.float32) - 128.0) / 128.0
    if x.dtype.kind == "i" and x.dtype.itemsize in (1, 2, 4):
        return (x.astype(np.float64) / 2.0 ** (8 * x.dtype.itemsize - 1)).astype(np.float32)
    raise InvalidMediaError(f"audio {name}: unsupported sample dtype {x.dtype}")


def _read_audio(src: Any, name: str, sample_rate: int, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    if isinstance(src, tuple):
        sr = src[1] if len(src) == 2 else None
        if not (isinstance(sr, int | float | np.number) and sr > 0 and float(sr).is_integer()):
            raise InvalidMediaError(f"audio {name}: expected a (waveform, whole positive sample_rate) pair")
        wave, sr = _to_channels(src[0], name), int(sr)
    elif isinstance(src, np.ndarray | torch.Tensor):
        wave, sr = _to_channels(src, name), sample_rate
    else:
        wave, sr = _decode_audio_file(src, name, max_seconds)
    if wave.size == 0:
        raise InvalidMediaError(f"audio {name} is empty (0 samples)")
    return wave, sr


def _resample(wave: np.ndarray, orig: int, new: int, name: str) -> np.ndarray:
    if (orig, new) not in _logged_rates:
        _logged_rates.add((orig, new))
        logger.info("resampling audio from %d Hz to %d Hz (first seen in %s)", orig, new, name)
    g = math.gcd(orig, new)
    if max(orig // g, new // g) <= _MAX_REDUCED_RATE:
        return AF.resample(torch.from_numpy(wave), orig, new).numpy()
    import librosa

    return librosa.resample(wave, orig_sr=orig, target_sr=new, res_type="soxr_hq")


def load_audio(src: Any, *, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None) -> np.ndarray:
    """Decode audio safely into a mono float32 waveform at ``sample_rate``.

    Args:
        src: a path, bytes, a binary file object, a numpy array or torch tensor (taken to
            be at ``sample_rate``; ``(n,)``, ``(C, n)`` or ``(n, C)``), or a
            ``(waveform, sample_rate)`` pair.
        sample_rate: the rate of the returned waveform, in Hz.
        max_seconds: the longest duration accepted; ``None`` accepts any length.

    Returns:
        A contiguous float32 array ``(n,)`` of finite values; never cut short.

    Raises:
        InvalidMediaError: the source is missing, truncated, corrupt, empty, has NaN or inf
            values, is longer than ``max_seconds``, or has an unsupported type or dtype.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    name = describe_source(src)
    wave, sr = _read_audio(src, name, sample_rate, max_seconds)  # (C, n); files decoded no further than the cap
    bad = int(wave.size - np.count_nonzero(np.isfinite(wave)))
    if bad:
        raise InvalidMediaError(f"audio {name} has {bad} non-finite samples (NaN or inf)")
    seconds = wave.shape[1] / sr
    if max_seconds is not None and seconds > max_seconds:
        raise InvalidMediaError(f"audio {name} is {seconds:.2f} s long, over the cap max_seconds={max_seconds}")
    mono = wave.mean(axis=0, dtype=np.float32)  # (C, n) -> (n,)
    if sr != sample_rate:
        mono = _resample(mono, sr, sample_rate, name)
    return np.ascontiguousarray(mono, dtype=np.float32)


def audio_duration(src: Any, *, sample_rate: int = SAMPLE_RATE) -> float:
    """The duration of an audio source in seconds, from the header unless only librosa reads it.

    Args:
        src: as for :func:`load_audio`.
        sample_rate: the rate assumed for a bare array or tensor.

    Returns:
        The duration in seconds.

    Raises:
        InvalidMediaError: as for :func:`load_audio`, bar ``max_seconds``.
    """
    name = describe_source(src)
    if isinstance(src, tuple | np.ndarray | torch.Tensor):
        wave, sr = _read_audio(src, name, sample_rate)
        return wave.shape[1] / sr
    fp = _file_source(src, "audio", name)
    _check_wav_complete(fp, name)
    start = _tell(fp)
    try:
        info = sf.info(fp)
    except Exception:
        info = None
    _rewind(fp, start)
    if info is None:  # a format only librosa reads: decode it (up to a cap) to measure it
        wave, sr = _decode_audio_file(src, name)
        return wave.shape[1] / sr
    if info.frames <= 0:
        raise InvalidMediaError(f"audio {name} is empty (0 samples)")
    return info.frames / info.samplerate
