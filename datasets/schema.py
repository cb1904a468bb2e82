"""The one in-memory sample every reader produces and the processor consumes.

A :class:`Sample` is a list of :class:`Turn` objects; a turn has a role (``"system"``,
``"user"``, ``"assistant"``, or ``None`` for a plain document) and ordered
:class:`Segment` parts (text, image or audio). A chat is several turns with roles; an
interleaved document is one turn with role ``None``. ``Sample.segments`` gives the flat,
ordered view with the role of each segment.

Media are referenced, not decoded: ``Segment.media`` holds a path (resolved against the
dataset file by the reader), a PIL image, a numpy array, raw bytes, or a
``(waveform, sample_rate)`` pair. Decoding happens in :mod:`mmgpt.datasets.media`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mmgpt.errors import DataError

SegmentType = Literal["text", "image", "audio"]
ROLES = ("system", "user", "assistant")
MEDIA_TYPES = ("image", "audio")


@dataclass
class Segment:
    """One part of a turn: a piece of text, or one image, or one audio clip."""

    type: SegmentType
    text: str | None = None
    media: Any = None

    def __post_init__(self) -> None:
        if self.type == "text":
            if not isinstance(self.text, str):
                raise DataError(f"text segment needs a string, got {type(self.text).__name__}")
        elif self.type in MEDIA_TYPES:
            if self.media is None:
                raise DataError(f"{self.type} segment has no media")
        else:
            raise DataError(f"unknown segment type {self.type!r} (expected text, image or audio)")


@dataclass
class Turn:
    """A run of segments spoken by one role (``None`` for a document without roles)."""

    role: str | None
    segments: list[Segment]

    def __post_init__(self) -> None:
        if self.role is not None and self.role not in ROLES:
            raise DataError(f"unknown role {self.role!r} (expected one of {', '.join(ROLES)})")


@dataclass
class Sample:
    """An ordered multimodal sample: a chat (turns with roles) or a document (one role-less turn).

    Attributes:
        turns: the turns in order.
        meta: free-form metadata (ground truth, task name, ids) carried to evaluation.
        source: where the sample came from (``"file.jsonl:12"``), used in error messages.
    """

    turns: list[Turn]
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"

    @property
    def is_chat(self) -> bool:
        return any(t.role is not None for t in self.turns)

    @property
    def segments(self) -> list[tuple[str | None, Segment]]:
        """Flat ordered view: ``(role, segment)`` for every segment of every turn."""
        return [(t.role, s) for t in self.turns for s in t.segments]

    def media(self, kind: str | None = None) -> Iterator[Segment]:
        """Media segments in order, optionally only of one kind (``"image"`` or ``"audio"``)."""
        for _, seg in self.segments:
            if seg.type in MEDIA_TYPES and (kind is None or seg.type == kind):
                yield seg

    def text(self) -> str:
        """All text of the sample joined by newlines (for text-only pretraining)."""
        return "\n".join(s.text for _, s in self.segments if s.type == "text")

    # --- conversion to and from the transformers content-list format -------------------
    @classmethod
    def from_messages(
        cls, messages: list[dict], meta: dict | None = None, source: str = "<memory>",
        base_dir: str | Path | None = None,
    ) -> Sample:
        """Build a chat sample from ``[{"role": ..., "content": str | [parts]}]``.

        Raises:
            DataError: a message or part is malformed (the message names ``source``).
        """
        if not isinstance(messages, list) or not messages:
            raise DataError(f"{source}: 'messages' must be a non-empty list")
        turns = []
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
                raise DataError(f"{source}: message {i} needs 'role' and 'content'")
            try:
                turns.append(Turn(msg["role"], parts_to_segments(msg["content"], base_dir)))
            except DataError as e:
                raise DataError(f"{source}: message {i}: {e}") from None
        return cls(turns, dict(meta or {}), source)

    @classmethod
    def from_document(
        cls, parts: list | str, meta: dict | None = None, source: str = "<memory>",
        base_dir: str | Path | None = None,
    ) -> Sample:
        """Build a document sample (no roles) from a content list or a string."""
        try:
            return cls([Turn(None, parts_to_segments(parts, base_dir))], dict(meta or {}), source)
        except DataError as e:
            raise DataError(f"{source}: {e}") from None

    def to_messages(self) -> list[dict]:
        """The transformers content-list form of a chat sample."""
        return [{"role": t.role, "content": [segment_to_part(s) for s in t.segments]} for t in self.turns]


def parts_to_segments(content: list | str, base_dir: str | Path | None = None) -> list[Segment]:
    """Convert a transformers content list (or a plain string) into segments.

    Image and audio parts accept the media under their type name (``{"type": "image",
    "image": ...}``) or under ``"path"`` / ``"url"``; relative string paths are resolved
    against ``base_dir``.

    Raises:
        DataError: a part has no type, an unknown type, or no payload.
    """
    if isinstance(content, str):
        return [Segment("text", text=content)]
    if not isinstance(content, list):
        raise DataError(f"content must be a string or a list of parts, got {type(content).__name__}")
    segments = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or "type" not in part:
            raise DataError(f"part {j} must be an object with a 'type'")
        kind = part["type"]
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise DataError(f"part {j}: text part needs a string 'text'")
            segments.append(Segment("text", text=part["text"]))
        elif kind in MEDIA_TYPES:
            media = next((part[k] for k in (kind, "path", "url") if part.get(k) is not None), None)
            if media is None:
                raise DataError(f"part {j}: {kind} part needs '{kind}' or 'path'")
            if isinstance(media, str) and base_dir is not None and "://" not in media:
                media = Path(base_dir) / media  # absolute paths stay as they are under the join
            segments.append(Segment(kind, media=media))
        else:
            raise DataError(f"part {j}: unknown type {kind!r}")
    return segments


def segment_to_part(seg: Segment) -> dict:
    """Inverse of :func:`parts_to_segments` for one segment (paths become strings)."""
    if seg.type == "text":
        return {"type": "text", "text": seg.text}
    media = str(seg.media) if isinstance(seg.media, Path) else seg.media
    return {"type": seg.type, seg.type: media}
