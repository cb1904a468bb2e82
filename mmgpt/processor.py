"""Processor: one Sample (or chat messages) -> token ids, labels and decoded media tensors.

Layout of a chat (ChatML, as the tokenizer's chat template renders it)::

    [bos] <|im_start|>user\\n <|image_start|> N x <|image_pad|> <|image_end|> How many?<|im_end|>\\n
          <|im_start|>assistant\\n three<|im_end|>\\n

and of a document: ``[bos] text <|audio_start|> N x <|audio_pad|> <|audio_end|> text <|endoftext|>``.

Labels are the ids of trained tokens and -100 elsewhere: in a chat only assistant content and
its ``<|im_end|>`` are trained; in a document all text and the final ``<|endoftext|>``; media
spans never. N per item comes from the encoder + adapter (image size; clip length).

A sequence longer than ``max_length`` loses text tokens from the left; media spans and chat
markers are kept whole. If those alone do not fit, :class:`ContextOverflowError`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from mmgpt.adapters import adapter_tokens
from mmgpt.batching import IGNORE, MediaItem
from mmgpt.config import MMGPTConfig
from mmgpt.datasets.schema import Sample, Segment
from mmgpt.encoders.base import MediaEncoder
from mmgpt.errors import ContextOverflowError, DataError
from mmgpt.modalities import MODALITIES
from mmgpt.tokenizer import EOS, IM_END, IM_START, MEDIA_TOKENS, encode_text, special_ids

log = logging.getLogger(__name__)


@dataclass
class Encoded:
    """One processed sample; ``media`` holds its items per modality in order of appearance."""

    input_ids: torch.Tensor  # (T,) long
    labels: torch.Tensor  # (T,) long, -100 where not trained
    media: dict[str, list[MediaItem]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"
    trimmed: int = 0  # text tokens dropped from the left to fit max_length

    @property
    def num_targets(self) -> int:
        return int((self.labels != IGNORE).sum())

    def __len__(self) -> int:
        return int(self.input_ids.numel())


class Processor:
    """Turns samples into model inputs for one model's tokenizer, encoders and adapters.

    Args:
        tokenizer: a tokenizer with mmgpt's special tokens (:mod:`mmgpt.tokenizer`).
        config: the model config (context length, adapter settings).
        encoders: the model's encoders by modality (their token counts, input preparation and
            decoding options).
        limits: per modality, the size cap of one item (the registry's ``limit_key``: pixels of
            an image, seconds of a clip); default the registry's, None for no cap.
    """

    def __init__(self, tokenizer, config: MMGPTConfig, encoders: Mapping[str, MediaEncoder],
                 limits: Mapping[str, float | None] | None = None) -> None:
        self.tokenizer = tokenizer
        self.config = config
        self.encoders = dict(encoders)
        self.limits = {m: MODALITIES[m].default_limit for m in self.encoders} | dict(limits or {})
        self.ids = special_ids(tokenizer)
        self.bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        self._newline = encode_text(tokenizer, "\n")
        self.prefix_space = config.tokenizer.resolved_prefix_space()
        self.media_after_text = config.tokenizer.media_after_text

    # ------------------------------------------------------------------ token counts
    def num_media_tokens(self, modality: str, length: int = 0) -> int:
        """Decoder tokens (N) for one item of ``modality`` whose last axis is ``length`` long
        (samples of a clip; images have one size)."""
        return adapter_tokens(self.config.adapters[modality], self.encoders[modality].num_tokens(length))

    # ------------------------------------------------------------------ encoding
    def __call__(self, sample: Sample | list[dict], *, add_generation_prompt: bool = False,
                 max_length: int | None = None, cache: Mapping[str, Any] | None = None) -> Encoded:
        """Encode a :class:`Sample` or chat messages (transformers content-list format).

        Args:
            sample: the sample, or ``[{"role": ..., "content": ...}]`` messages.
            add_generation_prompt: end with ``<|im_start|>assistant\\n`` (for generation).
            max_length: context budget; default the model's ``max_length``.
            cache: feature caches by modality (:class:`mmgpt.feature_cache.FeatureCache`): an
                item whose source is cached is not decoded, its features are used.

        Raises:
            InvalidMediaError: an image or clip cannot be decoded.
            DataError: the sample is malformed or a modality is not in this model.
            ContextOverflowError: the media and markers alone exceed ``max_length``.
        """
        if not isinstance(sample, Sample):
            sample = Sample.from_messages(sample)
        pieces: list[tuple[list[int], list[int], bool]] = []  # (ids, labels, trimmable)
        media: dict[str, list[MediaItem]] = {}

        def add(ids: list[int], train: bool, trimmable: bool) -> None:
            if ids:
                pieces.append((ids, list(ids) if train else [IGNORE] * len(ids), trimmable))

        if self.bos:
            add(self.bos, False, False)
        for turn in sample.turns:
            chat = turn.role is not None
            train = turn.role == "assistant" if chat else True
            if chat:
                add([self.ids[IM_START]], False, False)
                add(encode_text(self.tokenizer, turn.role) + self._newline, False, False)
            segments = turn.segments
            if self.media_after_text and turn.role == "user":
                segments = [s for s in segments if s.type == "text"] + [s for s in segments if s.type != "text"]
            for seg in segments:
                if seg.type == "text":
                    add(self.encode_text(seg.text), train, True)
                    continue
                n = self._add_media(seg, sample.source, media, cache)
                start, pad, end = MEDIA_TOKENS[seg.type]
                add([self.ids[start]] + [self.ids[pad]] * n + [self.ids[end]], False, False)
            if chat:
                add([self.ids[IM_END]], train, False)
                add(self._newline, False, False)
        if not sample.is_chat:
            add([self.ids[EOS]], True, False)
        if add_generation_prompt:
            add([self.ids[IM_START]], False, False)
            add(encode_text(self.tokenizer, "assistant") + self._newline, False, False)

        budget = max_length or self.config.max_length
        trimmed = _trim_left(pieces, budget, sample.source)
        ids = [i for p in pieces for i in p[0]]
        labels = [label for p in pieces for label in p[1]]
        return Encoded(torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long),
                       media, dict(sample.meta), sample.source, trimmed)

    def load_media(self, seg: Segment, source: str = "<memory>") -> torch.Tensor:
        """Decode one media segment safely and prepare it for its encoder.

        Raises:
            DataError: the model has no encoder for the segment's modality.
            InvalidMediaError: the media cannot be decoded or is over the cap.
        """
        encoder = self.encoders.get(seg.type)
        if encoder is None:
            have = " and ".join(self.encoders) or "no media"
            raise DataError(f"{source}: the sample has {seg.type} but this model has no {seg.type} encoder "
                            f"(it reads {have})")
        entry = MODALITIES[seg.type]
        decoded = entry.load(seg.media, **{entry.limit_key: self.limits.get(seg.type)}, **encoder.load_options())
        return encoder.prepare(decoded)

    def _add_media(self, seg: Segment, source: str, media: dict[str, list[MediaItem]], cache) -> int:
        """Append one item to ``media`` (cached features, or decoded values); its token count."""
        store = (cache or {}).get(seg.type)
        key = store.key(seg.media) if store is not None else None
        cached = store.lookup(key) if key is not None else None
        if cached is not None:
            media.setdefault(seg.type, []).append(MediaItem(features=cached, key=key))
            return adapter_tokens(self.config.adapters[seg.type], cached.shape[0])
        values = self.load_media(seg, source)
        media.setdefault(seg.type, []).append(MediaItem(values=values, key=key))
        return self.num_media_tokens(seg.type, values.shape[-1])

    def encode_text(self, text: str) -> list[int]:
        """Token ids of one text part as the model reads it (with the prefix space when on)."""
        return encode_text(self.tokenizer, text, self.prefix_space)

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)


def _trim_left(pieces: list[tuple[list[int], list[int], bool]], budget: int, source: str) -> int:
    """Drop text tokens from the left of trimmable pieces until the sequence fits ``budget``."""
    total = sum(len(p[0]) for p in pieces)
    over = total - budget
    if over <= 0:
        return 0
    fixed = sum(len(p[0]) for p in pieces if not p[2])
    if fixed > budget:
        raise ContextOverflowError(
            f"{source}: media and chat markers need {fixed} tokens but the context holds {budget}; "
            "use fewer or shorter media items, or a model with a longer context"
        )
    dropped = 0
    for k, (ids, labels, trimmable) in enumerate(pieces):
        if over <= 0:
            break
        if trimmable and ids:
            cut = min(over, len(ids))
            pieces[k] = (ids[cut:], labels[cut:], trimmable)
            over -= cut
            dropped += cut
    log.warning("%s: %d tokens exceed the context of %d; dropped %d text tokens from the left",
                source, total - budget, budget, dropped)
    return dropped
