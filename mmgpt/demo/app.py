"""The gradio app: chat with a model about an image and a clip, answers streamed as they come.

Layout: on the left the image (upload or paste), the clip (upload or microphone), buttons to
caption either directly, and the generation settings in an accordion; on the right the chat,
with the media shown inline, and the text box; below, examples from held-out ShapesTones items.

Endpoints (``gradio_client`` names): ``/answer`` (image, audio, text, max_new_tokens,
temperature, top_p -> answer; one shot, no history), and the interactive ``/chat``,
``/caption_image`` and ``/caption_audio``, which stream into the chat.

Safety: uploads are capped in bytes by gradio (``max_file_size``) and in pixels and seconds
by :class:`~mmgpt.demo.session.ModelRunner` from the file header before decoding. Handlers
take gradio's raw payloads (``preprocess=False``) so that no gradio code opens an upload
first; the paths are still checked by gradio to lie in its upload folder. A bad file or a
turn that does not fit gets a readable message and the app keeps serving. The queue is
bounded, model events share one concurrency group, and generation itself is serialised.
Only gradio's cache and the examples folder are served.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from mmgpt.demo.examples import make_examples
from mmgpt.demo.session import (
    DEFAULT_MAX_AUDIO_SECONDS,
    DEFAULT_MAX_PIXELS,
    ModelRunner,
    Settings,
    user_message,
)
from mmgpt.errors import ConfigError, DataError, MMGPTError

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 2000  # per message, checked here as well as in the browser (API clients skip the browser)
MAX_HISTORY_MESSAGES = 64  # a conversation keeps its last 32 exchanges (the context keeps fewer)
EMPTY_ANSWER = "(the model gave an empty answer)"
CSS = "#chat img { max-height: 180px; }"
_SKIP = object()  # "leave this output as it is" (gr.skip() is made per call)


def _path(payload: Any) -> str | None:
    """The server path of a raw file payload (``{"path": ...}``), or None when empty."""
    if isinstance(payload, dict):
        return payload.get("path") or None
    return payload or None


def _readable(error: Exception, *paths: str | None) -> str:
    """The error's message, with upload paths shortened to their file names."""
    text = str(error)
    for p in paths:
        if p:
            text = text.replace(p, Path(p).name)
    return text


def _error(error: Exception, *paths: str | None) -> dict:
    """An error as a chat message of its own (a titled box, not merged into the answer above)."""
    return {"role": "assistant", "content": f"⚠️ {_readable(error, *paths)}",
            "metadata": {"title": "Could not answer"}}


def _shown(message: dict) -> dict:
    """How a user turn looks in the chat: media inline, then the text."""
    parts: list[Any] = []
    for part in message["content"]:
        kind = part["type"]
        parts.append(part["text"] if kind == "text" else {"path": part[kind]})
    return {"role": "user", "content": parts}


def _new_state() -> dict:
    return {"messages": [], "chat": []}


class _Handlers:
    """Event handlers over one :class:`ModelRunner`; the per-browser state is a plain dict."""

    def __init__(self, runner: ModelRunner) -> None:
        self.runner = runner

    @staticmethod
    def _out(chat: list, state: Any = _SKIP, text: Any = _SKIP, image: Any = _SKIP, audio: Any = _SKIP):
        return tuple(gr.skip() if v is _SKIP else v for v in (chat, state, text, image, audio))

    def _turn(self, image: str | None, audio: str | None, text: str, settings: list) -> tuple[dict, Settings]:
        if len(text or "") > MAX_TEXT_CHARS:
            raise DataError(f"the message is {len(text):,} characters long; the demo takes at most {MAX_TEXT_CHARS:,}")
        for kind, path in (("image", image), ("audio", audio)):
            if path is not None:
                self.runner.check_media(kind, path)
        return user_message(text, image, audio), Settings(*settings)

    def _stream(self, state: dict, message: dict, context: list[dict], settings: Settings, cleared: dict):
        """Yield outputs while the answer streams in; on success the exchange joins the history."""
        chat = [*state["chat"], _shown(message), {"role": "assistant", "content": "…"}]
        yield self._out(chat, **cleared)
        answer = ""
        try:
            for piece in self.runner.stream([*context, message], settings):
                answer += piece
                chat[-1] = {"role": "assistant", "content": answer}
                yield self._out(chat)
        except MMGPTError as e:
            chat[-1] = _error(e, *_media_paths(message))
            yield self._out(chat, {"messages": state["messages"], "chat": chat})
            return
        answer = answer.strip()
        chat[-1] = {"role": "assistant", "content": answer or EMPTY_ANSWER}
        reply = {"role": "assistant", "content": [{"type": "text", "text": answer}]}
        history, shown = [*state["messages"], message, reply][-MAX_HISTORY_MESSAGES:], chat[-2 * MAX_HISTORY_MESSAGES:]
        yield self._out(shown, {"messages": history, "chat": shown})

    def _fail(self, state: dict, error: Exception, attempt: str, *paths: str | None):
        """Show what was tried (text and file names, not the files) and why it failed."""
        tried = " · ".join([attempt.strip()] * bool(str(attempt).strip()) + [Path(p).name for p in paths if p])
        chat = [*state["chat"], *([{"role": "user", "content": tried}] if tried else []), _error(error, *paths)]
        yield self._out(chat, {"messages": state["messages"], "chat": chat})

    def chat(self, image, audio, text, max_new_tokens, temperature, top_p, state):
        """A chat turn: the attached media and the text, answered with the history as context."""
        image, audio, state = _path(image), _path(audio), state or _new_state()
        try:
            message, settings = self._turn(image, audio, text, [max_new_tokens, temperature, top_p])
        except MMGPTError as e:
            yield from self._fail(state, e, str(text or ""), image, audio)
            return
        cleared = {"text": "", "image": None, "audio": None}
        yield from self._stream(state, message, state["messages"], settings, cleared)

    def caption(self, kind: str):
        """A handler captioning the image or the clip alone (one shot); the exchange joins the history."""

        def handler(media, max_new_tokens, temperature, top_p, state):
            path, state = _path(media), state or _new_state()
            try:
                if path is None:
                    raise DataError(f"attach {'an image' if kind == 'image' else 'a clip'} to caption first")
                message, settings = self._turn(*((path, None) if kind == "image" else (None, path)), "",
                                               [max_new_tokens, temperature, top_p])
            except MMGPTError as e:
                yield from self._fail(state, e, f"(caption the {'image' if kind == 'image' else 'clip'})", path)
                return
            yield from self._stream(state, message, [], settings, {kind: None})

        handler.__name__ = f"caption_{kind}"
        return handler

    def answer(self, image, audio, text, max_new_tokens, temperature, top_p) -> str:
        """One question, one answer, no history: the endpoint for scripts and ``gradio_client``."""
        image, audio = _path(image), _path(audio)
        try:
            message, settings = self._turn(image, audio, text, [max_new_tokens, temperature, top_p])
            return self.runner.answer([message], settings)
        except MMGPTError as e:
            raise gr.Error(_readable(e, image, audio)) from e


def _media_paths(message: dict) -> list[str]:
    return [p[p["type"]] for p in message["content"] if p["type"] != "text"]


def build_app(model, *, examples_dir: str | Path | None = None, num_examples: int = 5,
              max_file_size: str | int = "10mb", max_pixels: int = DEFAULT_MAX_PIXELS,
              max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS, queue_size: int = 32,
              concurrency: int = 1, title: str = "mmgpt demo") -> gr.Blocks:
    """Build the demo around one model.

    Args:
        model: an :class:`mmgpt.model.MMGPT` (put in eval mode here).
        examples_dir: where held-out ShapesTones examples are written (default a folder in the
            system's temp dir); it is the only folder served besides gradio's cache.
        num_examples: examples to show (0: none).
        max_file_size: largest upload, as gradio takes it (``"10mb"`` or bytes).
        max_pixels: largest image, width * height, checked from the header.
        max_audio_seconds: longest clip, checked from the header.
        queue_size: requests waiting at most; more are turned away with "queue full".
        concurrency: model events running at once (generation itself is serialised).
        title: the page title.

    Returns:
        The app; start it with :func:`launch`, which applies the size cap and the served paths.

    Raises:
        ConfigError: a cap, ``queue_size`` or ``concurrency`` is not positive.
    """
    if queue_size < 1 or concurrency < 1:
        raise ConfigError(f"queue_size and concurrency must be >= 1, got {queue_size} and {concurrency}")
    runner = ModelRunner(model.eval(), max_pixels=max_pixels, max_audio_seconds=max_audio_seconds)
    handlers = _Handlers(runner)
    # this process's own folder (not a fixed shared /tmp path another user could have planted)
    examples_dir = Path(examples_dir or tempfile.mkdtemp(prefix="mmgpt-demo-examples-")).resolve()
    examples = make_examples(examples_dir, num=num_examples)
    has = {m: m in runner.modalities for m in ("image", "audio")}
    top_tokens = max(1, min(512, runner.max_length // 2))

    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 6 * 3600)) as app:
        state = gr.State(_new_state())
        gr.Markdown(f"## {title}\n{model.num_parameters() / 1e6:.1f} M parameters · reads text, "
                    f"{' and '.join(runner.modalities)} · answers stream in as they are written")
        with gr.Row():
            w = _Widgets(*_media_column(has, top_tokens), *_chat_column())
        usable = [e for e in examples if all(has[k] or e[k] is None for k in ("image", "audio"))]
        if usable:
            gr.Examples([[e[k] for k in ("image", "audio") if has[k]] + [e["text"]] for e in usable],
                        inputs=[c for c, k in ((w.image, "image"), (w.audio, "audio")) if has[k]] + [w.text],
                        label="Held-out ShapesTones examples (click one, then Send)",
                        example_labels=[e["label"] for e in usable])
        _wire(w, handlers, state, concurrency)

    app.queue(max_size=queue_size, default_concurrency_limit=concurrency, api_open=False)
    app.mmgpt_launch_options = {"max_file_size": max_file_size, "allowed_paths": [str(examples_dir)]}
    return app


@dataclass
class _Widgets:
    image: Any
    audio: Any
    cap_image: Any
    cap_audio: Any
    max_new: Any
    temperature: Any
    top_p: Any
    chatbot: Any
    text: Any
    send: Any
    clear: Any


def _media_column(has: dict[str, bool], top_tokens: int) -> tuple:
    """Uploads, caption buttons and generation settings (left column)."""
    with gr.Column(scale=2, min_width=280):
        image = gr.Image(label="Image", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                         height=220, visible=has["image"], elem_id="image")
        audio = gr.Audio(label="Clip", type="filepath", sources=["upload", "microphone"],
                         visible=has["audio"], elem_id="audio")
        with gr.Row():
            cap_image = gr.Button("Caption the image", visible=has["image"], elem_id="caption-image")
            cap_audio = gr.Button("Caption the clip", visible=has["audio"], elem_id="caption-audio")
        with gr.Accordion("Generation settings", open=False):
            max_new = gr.Slider(1, top_tokens, value=min(64, top_tokens), step=1, label="Max new tokens")
            temperature = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label="Temperature (0 = greedy)")
            top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p (when sampling)")
    return image, audio, cap_image, cap_audio, max_new, temperature, top_p


def _chat_column() -> tuple:
    """The chat, the question box and its buttons (right column)."""
    with gr.Column(scale=3, min_width=360):
        chatbot = gr.Chatbot(label="Chat", height=460, elem_id="chat", feedback_options=None,
                             buttons=["copy", "copy_all"],
                             placeholder="Attach an image or a clip, ask a question, press Send.")
        with gr.Row():
            text = gr.Textbox(show_label=False, placeholder="Ask about the image or the clip…", scale=5,
                              elem_id="question", max_length=2000)
            send = gr.Button("Send", variant="primary", scale=1, min_width=80, elem_id="send")
        clear = gr.Button("Clear the chat", size="sm")
    return chatbot, text, send, clear


def _wire(w: _Widgets, handlers: _Handlers, state, concurrency: int) -> None:
    """Events: send / caption / clear, and the hidden API endpoint ``answer``."""
    answer_out = gr.Textbox(visible=False)
    answer_btn = gr.Button(visible=False)
    settings = [w.max_new, w.temperature, w.top_p]
    outputs = [w.chatbot, state, w.text, w.image, w.audio]
    common = {"preprocess": False, "concurrency_id": "model", "concurrency_limit": concurrency}
    gr.on([w.send.click, w.text.submit], handlers.chat, [w.image, w.audio, w.text, *settings, state], outputs,
          api_name="chat", **common)
    w.cap_image.click(handlers.caption("image"), [w.image, *settings, state], outputs, api_name="caption_image",
                      **common)
    w.cap_audio.click(handlers.caption("audio"), [w.audio, *settings, state], outputs, api_name="caption_audio",
                      **common)
    answer_btn.click(handlers.answer, [w.image, w.audio, w.text, *settings], answer_out, api_name="answer", **common)
    gr.on([w.clear.click, w.chatbot.clear], lambda: ([], _new_state()), None, [w.chatbot, state], queue=False,
          api_visibility="private")


def launch(app: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860, *, block: bool = True,
           quiet: bool = False, blocked_paths: list[str] | None = None) -> str:
    """Serve the app built by :func:`build_app`.

    Args:
        app: the app.
        host: interface to bind; the default, loopback, is reachable from this machine only.
            The demo has no login: bind another address only on a network you trust.
        port: TCP port (None: gradio picks a free one from 7860).
        block: serve until interrupted; False returns at once with the server running
            (stop it with ``app.close()``).
        quiet: no start-up banner.
        blocked_paths: folders never served; default the working directory when neither
            gradio's cache nor the examples folder lies inside it.

    Returns:
        The local URL (after the server stops, when ``block``).
    """
    opts = getattr(app, "mmgpt_launch_options", {})
    allowed = list(opts.get("allowed_paths", []))
    if blocked_paths is None:
        cwd = Path.cwd().resolve()
        inside = any(Path(p).resolve().is_relative_to(cwd) for p in [get_upload_folder(), *allowed])
        blocked_paths = [] if inside else [str(cwd)]
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: anyone who can reach this address can use the demo (there is no login)", host)
    _, url, _ = app.launch(
        server_name=host, server_port=port, prevent_thread_lock=not block, quiet=quiet, share=False,
        max_file_size=opts.get("max_file_size", "10mb"), allowed_paths=allowed, blocked_paths=blocked_paths,
        show_error=False, enable_monitoring=False, mcp_server=False, ssr_mode=False, run_history=False,
        footer_links=["api"], css=CSS, theme=gr.themes.Soft(),
    )
    return url
