"""``mmgpt serve MODEL``: an OpenAI-compatible HTTP server (Chat Completions) for an mmgpt model.

    POST /v1/chat/completions   messages with text, image_url and input_audio parts; max_tokens
                                (or max_completion_tokens), temperature, top_p, stop, n=1, stream
    GET  /v1/models             the one model served
    GET  /health                {"status": "ok"}

Requests waiting at the same moment are answered by one batched ``generate`` (dynamic batching:
the worker takes the first request, waits ``batch_window_ms`` for more, up to ``max_batch``, and
runs those with the same sampling settings together); streamed requests run alone and come back
as server-sent events. Limits: body size (413), image pixels and clip seconds (400),
``max_tokens`` (400), queue depth (429). Errors are OpenAI-style JSON
(``{"error": {"message", "type", "param", "code"}}``) and the server keeps serving after each;
an unexpected failure is a 500 without a traceback. It listens on loopback unless ``--host``
says otherwise; ``--api-key`` requires ``Authorization: Bearer KEY``.

Media: ``image_url`` takes ``data:`` URLs (base64), and local paths or ``file://`` URLs only under
``--media-folder``; ``input_audio`` takes base64 ``wav``, ``mp3``, ``flac`` (or ``ogg``). Each is
decoded with mmgpt's safe decoders against the caps before the request is queued.
"""

# No ``from __future__ import annotations``: FastAPI reads the handlers' annotations as objects
# (``Request`` is imported inside build_app, so the CLI does not need fastapi to start).
import argparse
import base64
import binascii
import contextlib
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmgpt.errors import ContextOverflowError, DataError, MMGPTError

log = logging.getLogger(__name__)

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


@dataclass
class Completion:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string (and whether one was found)."""
    at = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:at], True) if at >= 0 else (text, False)


class Batcher:
    """The one thread that runs the model: takes jobs from a bounded queue and answers them in batches.

    Args:
        model: an MMGPT in eval mode.
        max_batch: most requests in one generate.
        window_s: how long the first request of a batch waits for others.
        queue_size: jobs waiting at most (more: :class:`APIError` 429).
    """

    def __init__(self, model, max_batch: int = 16, window_s: float = 0.01, queue_size: int = 64) -> None:
        self.model, self.max_batch, self.window_s, self.queue_size = model, max_batch, window_s, queue_size
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.waiting = 0
        self.lock = threading.Lock()
        self.batches: list[int] = []  # sizes of the batches run (for tests and the bench)
        self.thread = threading.Thread(target=self._loop, name="mmgpt-serve", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> Job:
        """Queue a job.

        Raises:
            APIError: 429 when ``queue_size`` jobs already wait.
        """
        with self.lock:
            if self.waiting >= self.queue_size:
                raise APIError(429, f"the server has {self.waiting} requests waiting, its limit; retry shortly",
                               "rate_limit_error", code="queue_full")
            self.waiting += 1
        self.jobs.put(job)
        return job

    def _take(self) -> list[Job]:
        batch = [self.jobs.get()]
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch and not batch[0].stream:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self.jobs.get(timeout=left))
            except queue.Empty:
                break
        with self.lock:
            self.waiting -= len(batch)
        return batch

    def _loop(self) -> None:
        while True:
            try:
                self._serve(self._take())
            except Exception:  # never let the one worker die: the server would hang
                log.exception("serving a batch failed")

    def _serve(self, batch: list[Job]) -> None:
        """Run a batch: jobs of one key in one generate each, streamed jobs alone."""
        groups: dict[tuple, list[Job]] = {}
        for job in batch:
            if not job.stream:
                groups.setdefault(job.key, []).append(job)
        for jobs in groups.values():
            self._run(jobs)
        for job in batch:
            if job.stream:
                self._stream(job)

    def _run(self, jobs: list[Job]) -> None:
        from mmgpt.generation import generate_ids

        first = jobs[0]
        try:
            ids, prompt_lengths = generate_ids(
                self.model, [j.messages for j in jobs], max_new_tokens=max(j.max_tokens for j in jobs),
                do_sample=first.temperature > 0, temperature=first.temperature or 1.0, top_p=first.top_p)
            self.batches.append(len(jobs))
        except Exception as e:
            if len(jobs) > 1:  # one job's prompt may be the cause: answer each alone
                for job in jobs:
                    self._run([job])
            elif not first.future.done():
                first.future.set_exception(e)
            return
        for job, row, n in zip(jobs, ids, prompt_lengths):
            if job.future.done():  # cancelled by its client
                continue
            row = row[: job.max_tokens]
            text = self.model.tokenizer.decode(row, skip_special_tokens=True).strip()
            text, stopped = cut_at_stop(text, job.stop)
            reason = "length" if len(row) >= job.max_tokens and not stopped else "stop"
            job.future.set_result(Completion(text, reason, n, len(row)))

    def _stream(self, job: Job) -> None:
        from mmgpt.generation import stream_answer

        text, sent, stopped = "", 0, False
        hold = max([len(s) - 1 for s in job.stop] + [0])  # the tail that may begin a stop string
        try:
            pieces = stream_answer(self.model, job.messages, max_new_tokens=job.max_tokens,
                                   do_sample=job.temperature > 0, temperature=job.temperature or 1.0, top_p=job.top_p)
            with contextlib.closing(pieces):  # closed at a stop string: the generation stops too
                for piece in pieces:
                    text, stopped = cut_at_stop(text + piece, job.stop)
                    ready = len(text) if stopped else max(sent, len(text) - hold)
                    if ready > sent:
                        job.pieces.put(text[sent:ready])
                        sent = ready
                    if stopped:
                        break
            if len(text) > sent:
                job.pieces.put(text[sent:])
            self.batches.append(1)
            tokens = len(self.model.tokenizer(text, add_special_tokens=False)["input_ids"])
            reason = "stop" if stopped or tokens < job.max_tokens else "length"
            job.future.set_result(Completion(text, reason, 0, tokens))
        except Exception as e:
            job.future.set_exception(e)
        finally:
            job.pieces.put(None)


# ---------------------------------------------------------------------------------- requests
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


# ---------------------------------------------------------------------------------- app
def build_app(model, name: str = "mmgpt", *, api_key: str | None = None, media_folder: str | Path | None = None,
              limits: Limits | None = None, max_batch: int = 16, batch_window_ms: float = 10.0):
    """The FastAPI app serving ``model`` under the id ``name``; ``app.state.batcher`` runs it."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    limits = limits or Limits()
    folder = Path(media_folder).resolve() if media_folder else None
    batcher = Batcher(model.eval(), max_batch, batch_window_ms / 1000, limits.queue_size)
    app = FastAPI(title="mmgpt", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher = batcher
    created = int(time.time())

    def error(e: APIError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if api_key is not None and request.url.path != "/health" and \
                request.headers.get("authorization") != f"Bearer {api_key}":
            return error(APIError(401, "missing or wrong API key", "authentication_error", code="invalid_api_key"))
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > limits.max_body_bytes:
            return error(APIError(413, f"the body is {int(size):,} bytes, over the {limits.max_body_bytes:,}-byte limit"))
        try:
            return await call_next(request)
        except Exception:  # answered, logged, never shown
            log.exception("request failed")
            return error(APIError(500, "internal error", "server_error"))

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "mmgpt"}]}

    @app.post("/v1/chat/completions")
    async def completions(request: Request):
        return await _complete(request, model, name, batcher, limits, folder)

    return app


async def _complete(request, model, name: str, batcher: Batcher, limits: Limits, folder: Path | None):
    """One chat completion: parse and check the body, queue the job, answer (or stream) it."""
    import asyncio

    from fastapi.responses import JSONResponse, StreamingResponse

    try:
        raw = b""
        async for chunk in request.stream():  # read no further than the limit (chunked bodies have no length)
            raw += chunk
            if len(raw) > limits.max_body_bytes:
                raise APIError(413, f"the body is over the {limits.max_body_bytes:,}-byte limit")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise APIError(400, f"the body is not JSON ({e})") from None
        job = await asyncio.to_thread(to_job, body, limits, folder, model)
        if job.stream:
            job.pieces = queue.Queue()
        batcher.submit(job)
        if job.stream:
            return StreamingResponse(_events(job, name), media_type="text/event-stream")
        done = await asyncio.wrap_future(job.future)
    except (ContextOverflowError, DataError) as e:
        return JSONResponse(APIError(400, str(e)).body(), status_code=400)
    except APIError as e:
        return JSONResponse(e.body(), status_code=e.status)
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": name, "choices": [{"index": 0, "finish_reason": done.finish_reason,
                                        "message": {"role": "assistant", "content": done.text}}],
            "usage": {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
                      "total_tokens": done.prompt_tokens + done.completion_tokens}}


def _events(job: Job, name: str) -> Iterator[str]:
    """Server-sent events of a streamed job: a role chunk, content chunks, a finish chunk, [DONE]."""
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict, finish: str | None = None) -> str:
        data = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(data)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    while (piece := job.pieces.get()) is not None:
        yield chunk({"content": piece})
    try:
        job.future.result()
        yield chunk({}, "stop")
    except Exception as e:  # the stream already began: the error is its last event
        body = APIError(400 if isinstance(e, MMGPTError) else 500,
                        str(e) if isinstance(e, MMGPTError) else "internal error").body()
        yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"


def add_cli(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("model", help="a model folder (runs/<name>/final)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=None, help="require Authorization: Bearer KEY")
    parser.add_argument("--media-folder", default=None, help="local image paths are accepted under this folder only")
    parser.add_argument("--max-batch", type=int, default=16, help="most requests in one batched generate")
    parser.add_argument("--batch-window-ms", type=float, default=10.0,
                        help="how long a request waits for others to batch with")
    parser.add_argument("--queue-size", type=int, default=64, help="requests waiting at most (more: 429)")
    parser.add_argument("--max-tokens", type=int, default=512, help="the largest max_tokens a request may ask")
    parser.add_argument("--max-pixels", type=int, default=16_000_000)
    parser.add_argument("--max-audio-seconds", type=float, default=30.0)
    parser.add_argument("--max-body-mb", type=float, default=20.0)
    parser.add_argument("--name", default=None, help="the model id clients use (default the folder's name)")

    def run(args: argparse.Namespace) -> int:
        import uvicorn

        from mmgpt.cli.common import load_checkpoint

        model = load_checkpoint(args.model)
        limits = Limits(int(args.max_body_mb * 2**20), args.max_pixels, args.max_audio_seconds, args.max_tokens,
                        args.queue_size)
        name = args.name or Path(args.model).resolve().name
        if name == "final":
            name = Path(args.model).resolve().parent.name
        app = build_app(model, name, api_key=args.api_key, media_folder=args.media_folder, limits=limits,
                        max_batch=args.max_batch, batch_window_ms=args.batch_window_ms)
        print(f"serving {name} on http://{args.host}:{args.port}/v1 (OpenAI Chat Completions)")
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return 0

    parser.set_defaults(run=run)
