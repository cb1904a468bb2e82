"""The registry of media kinds: one entry per modality, read by everything that handles media.

The processor, batching, model, feature cache and contrastive stage never branch on
``"image"`` or ``"audio"``: they look the modality up here and talk to its encoder through
:class:`mmgpt.encoders.base.MediaEncoder`. What is derived from an entry:

- placeholder tokens ``<|NAME_start|> <|NAME_pad|> <|NAME_end|>`` (:attr:`Modality.tokens`,
  in the tokenizer's special tokens and chat template),
- the adapter ``adapters.NAME`` (its reducer checked against the encoder's token layout),
- the trainable part names ``encoders.NAME`` / ``adapters.NAME``,
- the batch entry ``batch["media"][NAME] = (values, lengths)``.

Adding a modality (video frames, say) is one encoder file in ``encoders/``, its safe decoder in
:mod:`mmgpt.datasets.media`, its settings dataclass and field in :mod:`mmgpt.config`
(``ENCODER_FIELDS``), and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mmgpt.datasets.media import DEFAULT_MAX_PIXELS, audio_duration, load_audio, load_image
from mmgpt.encoders.audio import AudioEncoder
from mmgpt.encoders.base import MediaEncoder
from mmgpt.encoders.vision import VisionEncoder


@dataclass(frozen=True)
class Modality:
    """One kind of media the model reads.

    Attributes:
        name: the key of everything per modality (``"image"``).
        encoder: the :class:`MediaEncoder` class, built as ``encoder(settings, load_weights)``
            from the config section ``ENCODER_FIELDS[name]`` (``vision``).
        load: the safe decoder of :mod:`mmgpt.datasets.media`, called as
            ``load(source, **{limit_key: limit}, **encoder.load_options())``.
        limit_key: the keyword of ``load`` that caps one item's size (``max_pixels``).
        default_limit: that cap unless the caller gives another.
        measure: ``measure(source, encoder)``: an item's length in the encoder's unit from the
            file header alone (no decoding), for token estimates.
        caption_prompt: the instruction that asks for a caption of one item.
    """

    name: str
    encoder: type[MediaEncoder]
    load: Callable[..., Any]
    limit_key: str
    default_limit: float
    measure: Callable[[Any, MediaEncoder], int]
    caption_prompt: str

    @property
    def tokens(self) -> tuple[str, str, str]:
        """Start, pad and end placeholder tokens of one item's span."""
        return f"<|{self.name}_start|>", f"<|{self.name}_pad|>", f"<|{self.name}_end|>"


def _fixed_size(source: Any, encoder: MediaEncoder) -> int:
    return 0  # every item gives encoder.fixed_tokens whatever its size


def _samples_from_header(source: Any, encoder: MediaEncoder) -> int:
    rate = encoder.load_options()["sample_rate"]
    return int(audio_duration(source, sample_rate=rate) * rate)


MODALITIES: dict[str, Modality] = {m.name: m for m in (
    Modality("image", VisionEncoder, load_image, "max_pixels", DEFAULT_MAX_PIXELS, _fixed_size, "Describe the image."),
    Modality("audio", AudioEncoder, load_audio, "max_seconds", 600.0, _samples_from_header, "Describe the sound."),
)}

CAPTION_PROMPTS = {name: m.caption_prompt for name, m in MODALITIES.items()}


def modality(name: str) -> Modality:
    """The registry entry of ``name``.

    Raises:
        KeyError: ``name`` is not a registered modality (the message lists them).
    """
    try:
        return MODALITIES[name]
    except KeyError:
        raise KeyError(f"unknown modality {name!r}; known: {', '.join(MODALITIES)}") from None
