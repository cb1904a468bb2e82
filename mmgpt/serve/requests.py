"""Requests of ``mmgpt serve``: OpenAI chat-completion bodies checked and turned into jobs.

Every check happens here, before a job is queued: the body's fields, the messages and their
parts, and each image and clip decoded with mmgpt's safe decoders against the server's limits.
A failure is an :class:`APIError` with the HTTP status and OpenAI-style body it is answered with.
"""

from __future__ import annotations

import base64
import binascii
import queue
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmgpt.errors import MMGPTError

AUDIO_FORMATS = ("wav", "mp3", "flac", "ogg")


class APIError(Exception):
    """An error answered to the client with an HTTP status and an OpenAI-style body."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class Limits:
    """What one request may ask for."""

    max_body_bytes: int = 20 * 2**20
    max_pixels: int = 16_000_000
    max_audio_seconds: float = 30.0
    max_tokens: int = 512
    queue_size: int = 64
    max_messages: int = 256
    max_media: int = 16  # images and clips in one request (each is also capped)


@dataclass
class Job:
    """One request's prompt and settings, and where its answer goes."""

    messages: list[dict]
    max_tokens: int
    temperature: float
    top_p: float
    stop: list[str]
    stream: bool = False
    future: Future = field(default_factory=Future)
    pieces: queue.Queue | None = None  # streamed text pieces, then None

    @property
    def key(self) -> tuple:
        """Jobs with the same key can share one batched generate."""
        sampling = (round(self.temperature, 6), round(self.top_p, 6)) if self.temperature > 0 else ()
        return (self.max_tokens, *sampling)  # one max_tokens per batch: the same prompt budget for each


def _b64(data: str, what: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise APIError(400, f"{what} is not valid base64") from None


def _image(part: dict, limits: Limits, media_folder: Path | None, where: str):
    from mmgpt.datasets.media import load_image

    url = (part.get("image_url") or {}).get("url") if isinstance(part.get("image_url"), dict) else part.get("image_url")
    if not isinstance(url, str) or not url:
        raise APIError(400, f"{where}: image_url.url is missing", param=where)
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        if ";base64" not in header:
            raise APIError(400, f"{where}: a data URL must be base64", param=where)
        src: Any = _b64(data, f"{where} image data")
    elif url.startswith(("http://", "https://")):
        raise APIError(400, f"{where}: the server fetches no URLs; send the image as a data: URL", param=where)
    else:
        src = _local(url.removeprefix("file://"), media_folder, where)
    try:
        return load_image(src, max_pixels=limits.max_pixels)
    except MMGPTError as e:
        raise APIError(400, f"{where}: {e}", param=where) from None


def _local(path: str, media_folder: Path | None, where: str) -> Path:
    if media_folder is None:
        raise APIError(400, f"{where}: file paths are not accepted (start the server with --media-folder)", param=where)
    p = (media_folder / path).resolve()
    if not p.is_relative_to(media_folder):
        raise APIError(400, f"{where}: {path} is outside the server's media folder", param=where)
    return p


def _audio(part: dict, limits: Limits, sample_rate: int, where: str):
    from mmgpt.datasets.media import load_audio

    spec = part.get("input_audio")
    if not isinstance(spec, dict) or not isinstance(spec.get("data"), str):
        raise APIError(400, f"{where}: input_audio needs data (base64) and format", param=where)
    if spec.get("format", "wav") not in AUDIO_FORMATS:
        raise APIError(400, f"{where}: audio format {spec.get('format')!r} is not one of {', '.join(AUDIO_FORMATS)}",
                       param=where)
    try:
        return load_audio(_b64(spec["data"], f"{where} audio data"), sample_rate=sample_rate,
                          max_seconds=limits.max_audio_seconds)
    except MMGPTError as e:
        raise APIError(400, f"{where}: {e}", param=where) from None


def to_messages(raw: Any, limits: Limits, media_folder: Path | None, modalities: tuple[str, ...],
                sample_rate: int) -> list[dict]:
    """OpenAI chat messages -> mmgpt's (media decoded and checked here).

    Raises:
        APIError: 400 naming the message and part at fault.
    """
    if not isinstance(raw, list) or not raw or len(raw) > limits.max_messages:
        raise APIError(400, f"messages must be a list of 1 to {limits.max_messages} messages", param="messages")
    media = sum(1 for m in raw if isinstance(m, dict) and isinstance(m.get("content"), list)
                for p in m["content"] if isinstance(p, dict) and p.get("type") in ("image_url", "input_audio"))
    if media > limits.max_media:
        raise APIError(400, f"the request has {media} images and clips; the server takes at most {limits.max_media}",
                       param="messages")
    out = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise APIError(400, f"{where}: role must be system, user or assistant", param=where)
        content = m.get("content")
        if isinstance(content, str):
            out.append({"role": m["role"], "content": [{"type": "text", "text": content}]})
            continue
        if not isinstance(content, list):
            raise APIError(400, f"{where}: content must be a string or a list of parts", param=where)
        parts = []
        for j, part in enumerate(content):
            at = f"{where}.content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                parts.append({"type": "text", "text": part["text"]})
            elif kind == "image_url" and "image" in modalities:
                parts.append({"type": "image", "image": _image(part, limits, media_folder, at)})
            elif kind == "input_audio" and "audio" in modalities:
                parts.append({"type": "audio", "audio": _audio(part, limits, sample_rate, at)})
            else:
                raise APIError(400, f"{at}: unsupported part {kind!r} (this model takes text"
                               f"{', image_url' if 'image' in modalities else ''}"
                               f"{', input_audio' if 'audio' in modalities else ''})", param=at)
        out.append({"role": m["role"], "content": parts})
    return out


def _number(body: dict, key: str, default: float, lo: float, hi: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise APIError(400, f"{key} must be a number from {lo} to {hi}, got {value!r}", param=key)
    return float(value)


def to_job(body: Any, limits: Limits, media_folder: Path | None, model) -> Job:
    """A request body -> a :class:`Job` (everything checked before it is queued)."""
    if not isinstance(body, dict):
        raise APIError(400, "the body must be a JSON object")
    if body.get("n", 1) != 1:
        raise APIError(400, "only n=1 is supported", param="n")
    most = min(limits.max_tokens, model.config.max_length - 1)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = min(most, model.config.max_length // 2) if max_tokens is None else max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= most:
        raise APIError(400, f"max_tokens must be an integer from 1 to {most}, got {max_tokens!r}", param="max_tokens")
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
        raise APIError(400, "stop must be a non-empty string or a list of at most 4 of them", param="stop")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise APIError(400, f"stream must be true or false, got {stream!r}", param="stream")
    audio = model.encoders["audio"] if "audio" in model.encoders else None  # noqa: SIM401 (an nn.ModuleDict)
    sample_rate = audio.load_options()["sample_rate"] if audio is not None else 16_000
    messages = to_messages(body.get("messages"), limits, media_folder, tuple(model.config.modalities), sample_rate)
    return Job(messages, max_tokens, _number(body, "temperature", 1.0, 0.0, 2.0), _number(body, "top_p", 1.0, 0.0, 1.0),
               stop, stream)
