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
import json
import logging
import queue
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from mmgpt.errors import ContextOverflowError, DataError, MMGPTError
from mmgpt.serve.batcher import Batcher, Completion, cut_at_stop
from mmgpt.serve.requests import APIError, Job, Limits, to_job, to_messages

__all__ = ["APIError", "Batcher", "Completion", "Job", "Limits", "build_app", "cut_at_stop", "to_job", "to_messages"]

log = logging.getLogger(__name__)

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
