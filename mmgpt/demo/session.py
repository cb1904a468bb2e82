"""What the web demo and the terminal chat share: media checks, settings, one model behind a lock.

Neither front end touches the model directly. A :class:`ModelRunner` checks uploads against
the caps (header first: pixel count and duration are read before any pixel or sample is
decoded), fits a chat history into the context by dropping its oldest exchanges, and runs
one generation at a time: torch generation on one module is not safe to run from two threads
at once, so every call takes the runner's lock, held by the thread that generates
(:func:`mmgpt.generation.stream_answer`, the streaming path the API uses too). This module does
not import gradio.

Chat messages use the transformers content-list format that :meth:`mmgpt.model.MMGPT.chat`
takes; media parts hold file paths, checked once when they are attached.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from mmgpt.datasets.media import audio_duration, image_size, load_audio, load_image
from mmgpt.errors import ConfigError, ContextOverflowError, DataError, InvalidMediaError
from mmgpt.generation import stream_answer
from mmgpt.modalities import CAPTION_PROMPTS

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 16_000_000  # 16 MP: a phone photo; far above what the encoders look at
DEFAULT_MAX_AUDIO_SECONDS = 30.0


@dataclass
class Settings:
    """Generation settings a person can change.

    Attributes:
        max_new_tokens: longest answer in tokens.
        temperature: 0 means greedy decoding; above 0, sampling at this temperature.
        top_p: nucleus sampling mass (used only when sampling).
    """

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        try:  # values may come raw from a web client
            self.max_new_tokens = int(self.max_new_tokens)
            self.temperature, self.top_p = float(self.temperature), float(self.top_p)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"generation settings must be numbers: {e}") from None
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")

    def generate_kwargs(self) -> dict:
        """Keyword arguments for :func:`mmgpt.generation.generate`."""
        if self.temperature == 0:
            return {"max_new_tokens": self.max_new_tokens, "do_sample": False}
        return {"max_new_tokens": self.max_new_tokens, "do_sample": True,
                "temperature": self.temperature, "top_p": self.top_p}


def user_message(text: str, image: str | None = None, audio: str | None = None) -> dict:
    """One user turn: the image, then the clip, then the text.

    Args:
        text: the question; when empty and exactly one medium is given, its caption prompt.
        image: an image path, or None.
        audio: an audio path, or None.

    Returns:
        ``{"role": "user", "content": [...]}``.

    Raises:
        DataError: nothing to send, or an image and a clip without a question.
    """
    text = str(text or "").strip()
    if not text:
        if image is not None and audio is not None:
            raise DataError("with both an image and a clip, type a question about them")
        if image is None and audio is None:
            raise DataError("type a message, or attach an image or a clip")
        text = CAPTION_PROMPTS["image" if image is not None else "audio"]
    content: list[dict] = []
    if image is not None:
        content.append({"type": "image", "image": image})
    if audio is not None:
        content.append({"type": "audio", "audio": audio})
    content.append({"type": "text", "text": text})
    return {"role": "user", "content": content}


class ModelRunner:
    """One model shared by every user of a front end.

    Args:
        model: an :class:`mmgpt.model.MMGPT` in eval mode.
        max_pixels: largest image (width * height) accepted, checked from the file header.
        max_audio_seconds: longest clip accepted, checked from the file header.
    """

    def __init__(self, model, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS) -> None:
        if max_pixels < 1 or max_audio_seconds <= 0:
            raise ConfigError(f"caps must be positive, got max_pixels={max_pixels}, "
                              f"max_audio_seconds={max_audio_seconds}")
        self.model = model
        self.max_pixels = int(max_pixels)
        self.max_audio_seconds = float(max_audio_seconds)
        self.modalities: tuple[str, ...] = tuple(model.config.modalities)
        self._lock = threading.Lock()

    @property
    def max_length(self) -> int:
        """The model's context in tokens."""
        return int(self.model.config.max_length)

    def check_media(self, kind: str, path: str) -> str:
        """Check an image or clip before it joins a chat: caps from the header, then a full decode.

        Args:
            kind: ``"image"`` or ``"audio"``.
            path: the file.

        Returns:
            ``path``, unchanged.

        Raises:
            DataError: the model has no encoder for ``kind``.
            InvalidMediaError: the file is missing, corrupt, over a cap, or empty.
        """
        if kind not in self.modalities:
            raise DataError(f"this model does not read {kind}; it reads {' and '.join(self.modalities)}")
        if kind == "image":
            w, h = image_size(path)
            if w * h > self.max_pixels:
                raise InvalidMediaError(f"image {path} is {w}x{h} = {w * h:,} pixels, over this demo's cap "
                                        f"of {self.max_pixels:,}")
            load_image(path, max_pixels=self.max_pixels)
        else:
            seconds = audio_duration(path)
            if seconds > self.max_audio_seconds:
                raise InvalidMediaError(f"audio {path} is {seconds:.1f} s long, over this demo's cap "
                                        f"of {self.max_audio_seconds:g} s")
            load_audio(path, max_seconds=self.max_audio_seconds)
        return path

    def fit(self, messages: list[dict], max_new_tokens: int) -> tuple[list[dict], int]:
        """Drop the oldest exchanges (user + assistant) until the prompt and the answer fit.

        Args:
            messages: the chat, ending with a user turn; alternating user / assistant.
            max_new_tokens: room kept for the answer.

        Returns:
            ``(messages that fit, number of exchanges dropped)``.

        Raises:
            ContextOverflowError: the last user turn alone does not fit.
        """
        budget = self.max_length - max_new_tokens
        if budget < 1:
            raise ContextOverflowError(f"max_new_tokens={max_new_tokens} does not fit the context of "
                                       f"{self.max_length} tokens")
        dropped = 0
        while True:
            try:
                self.model.processor(messages, add_generation_prompt=True, max_length=budget)
                return messages, dropped
            except ContextOverflowError:
                if len(messages) <= 1:
                    raise
                messages, dropped = messages[2:], dropped + 1

    def stream(self, messages: list[dict], settings: Settings) -> Iterator[str]:
        """Generate the answer to the last user turn, piece by piece.

        Args:
            messages: the chat (see :meth:`fit`; older exchanges that do not fit are left out).
            settings: generation settings.

        Returns:
            An iterator of text pieces. Only one generation runs at a time; others wait.

        Raises:
            MMGPTError: bad media, or a turn that cannot fit (raised while iterating).
        """
        messages, dropped = self.fit(messages, settings.max_new_tokens)
        if dropped:
            log.info("left out the %d oldest exchange(s) to fit the context of %d tokens", dropped, self.max_length)
        yield from stream_answer(self.model, messages, lock=self._lock, **settings.generate_kwargs())

    def answer(self, messages: list[dict], settings: Settings) -> str:
        """The whole answer to the last user turn (see :meth:`stream`)."""
        return "".join(self.stream(messages, settings)).strip()
