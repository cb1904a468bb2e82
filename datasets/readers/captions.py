"""Caption rows as chat samples: media + prompt from the user, the caption from the assistant.

Shared by the COCO, audio-caption and WebDataset readers. A captioned item (an image or a clip
with one or more reference captions) becomes samples according to ``mode``:

* ``"each"`` (training): one sample per caption: ``user: [media..., prompt]``,
  ``assistant: caption``; ``meta["caption_index"]`` says which caption it was.
* ``"first"`` (evaluation with a target): one sample per item whose assistant turn is the
  first caption; every caption is in ``meta["references"]``.
* ``"all"`` (evaluation by generation): one sample per item with the user turn only; every
  caption is in ``meta["references"]``.
"""

from __future__ import annotations

from typing import Any, Literal

from mmgpt.datasets.readers.base import check_choice
from mmgpt.datasets.schema import Sample, Segment, Turn
from mmgpt.errors import DataError

CaptionMode = Literal["each", "first", "all"]
CAPTION_MODES = ("each", "first", "all")
IMAGE_PROMPT = "Describe the image."
AUDIO_PROMPT = "Describe the sound."


def check_mode(mode: str) -> None:
    """Raise ConfigError unless ``mode`` is ``"each"``, ``"first"`` or ``"all"``."""
    check_choice("mode", mode, CAPTION_MODES)


def clean_caption(value: Any, what: str) -> str:
    """Return a caption stripped of surrounding whitespace.

    Args:
        value: the raw caption cell or field.
        what: how to name it in the error (``"caption"``, ``"'caption_3' cell"``).

    Raises:
        DataError: the caption is not a string or is empty.
    """
    if not isinstance(value, str):
        raise DataError(f"{what} must be a string, got {type(value).__name__}")
    caption = value.strip()
    if not caption:
        raise DataError(f"empty {what}")
    return caption


def caption_samples(
    kind: str, media: list[Any], prompt: str, captions: list[str], mode: CaptionMode,
    meta: dict[str, Any], source: str,
) -> list[Sample]:
    """Build the caption chat samples of one item.

    Args:
        kind: ``"image"`` or ``"audio"``.
        media: the item's media references (paths or bytes), in order.
        prompt: the user's instruction, after the media.
        captions: the item's reference captions (non-empty, already cleaned).
        mode: ``"each"``, ``"first"`` or ``"all"`` (see the module docstring).
        meta: ids to carry; copied into every sample.
        source: where the item came from.

    Returns:
        One sample per caption (``"each"``) or one sample (``"first"``, ``"all"``).
    """

    def user() -> Turn:  # a fresh turn per sample: samples must not share mutable parts
        return Turn("user", [*(Segment(kind, media=m) for m in media), Segment("text", text=prompt)])

    def answer(caption: str) -> Turn:
        return Turn("assistant", [Segment("text", text=caption)])

    if mode == "each":
        return [
            Sample([user(), answer(c)], {**meta, "caption_index": k}, source) for k, c in enumerate(captions)
        ]
    turns = [user(), answer(captions[0])] if mode == "first" else [user()]
    return [Sample(turns, {**meta, "references": list(captions)}, source)]
