"""LLaVA conversation JSON: a list of ``{"id", "image", "conversations"}`` rows.

Example row::

    {"id": "000000033471", "image": "coco/train2017/000000033471.jpg",
     "conversations": [{"from": "human", "value": "<image>\\nWhat is on the table?"},
                       {"from": "gpt", "value": "A laptop."}]}
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmgpt.datasets.readers.base import MediaRoot, OnError, Reader, load_json, located
from mmgpt.datasets.schema import Sample, Segment, Turn
from mmgpt.errors import DataError

IMAGE_MARKER = "<image>"
ROLE_MAP = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def _image_refs(value: Any, root: MediaRoot, label: str) -> list[Path | str]:
    """The row's ``image`` (absent, one name, or a list of names) as resolved paths."""
    if value is None:
        return []
    names = value if isinstance(value, list) else [value]
    if not names or not all((isinstance(n, str) and n) or isinstance(n, bytes | tuple) for n in names):
        raise DataError(f"{label}: 'image' must be a file name or a non-empty list of file names")
    return [root(n) if isinstance(n, str) else n for n in names]  # bytes: already the image (Parquet rows)


def _split_markers(text: str, images: Iterator[Path | str]) -> list[Segment]:
    """Text with ``<image>`` markers -> segments; one newline right after a marker is dropped."""
    segments = []
    for k, piece in enumerate(text.split(IMAGE_MARKER)):
        if k > 0:
            segments.append(Segment("image", media=next(images)))
            piece = piece.removeprefix("\n")
        if piece:
            segments.append(Segment("text", text=piece))
    return segments or [Segment("text", text="")]


def llava_sample(row: Any, source: str, root: MediaRoot) -> Sample:
    """Convert one LLaVA row into a chat sample.

    Args:
        row: the decoded row.
        source: where the row came from (``"<file>[<index>]"``); errors start with it.
        root: how image names resolve (:class:`~mmgpt.datasets.readers.base.MediaRoot`).

    Returns:
        The chat sample; ``meta`` holds every top-level key except ``image`` and
        ``conversations`` (so ``meta["id"]`` is the row id).

    Raises:
        DataError: no ``conversations`` list, a turn without a string ``value``, an unknown
            ``from``, a marker outside a human turn, or markers and images that do not match.
    """
    if not isinstance(row, dict):
        raise DataError(f"{source}: expected an object, got {type(row).__name__}")
    label = f"{source} (id {row['id']!r})" if "id" in row else source
    conversations = row.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        raise DataError(f"{label}: missing 'conversations' (a non-empty list of turns)")
    images = _image_refs(row.get("image"), root, label)

    roles, texts = [], []
    for t, turn in enumerate(conversations):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise DataError(f"{label}: conversations[{t}] needs a string 'value'")
        role = ROLE_MAP.get(turn["from"]) if isinstance(turn.get("from"), str) else None
        if role is None:
            raise DataError(
                f"{label}: conversations[{t}] has unknown role 'from': {turn.get('from')!r} "
                f"(expected one of {', '.join(ROLE_MAP)})"
            )
        if role != "user" and IMAGE_MARKER in turn["value"]:
            raise DataError(f"{label}: conversations[{t}] is a {role} turn with an {IMAGE_MARKER} marker")
        roles.append(role)
        texts.append(turn["value"])

    n_markers = sum(text.count(IMAGE_MARKER) for text in texts)
    if n_markers and n_markers != len(images):
        raise DataError(f"{label}: {n_markers} {IMAGE_MARKER} markers but {len(images)} images")
    pending = iter(images)
    turns = [Turn(role, _split_markers(text, pending)) for role, text in zip(roles, texts)]
    if images and not n_markers:  # LLaVA's convention: the images open the first human turn
        first_user = next((turn for turn in turns if turn.role == "user"), None)
        if first_user is None:
            raise DataError(f"{label}: has an image but no human turn to put it in")
        first_user.segments[:0] = [Segment("image", media=m) for m in images]
        if first_user.segments[-1].type == "text" and first_user.segments[-1].text == "":
            first_user.segments.pop()  # an empty human text next to the image carries nothing
    meta = {k: v for k, v in row.items() if k not in ("image", "conversations")}
    return Sample(turns, meta, source)


class LlavaReader(Reader):
    """Iterable over the samples of LLaVA conversation JSON files; see :func:`read_llava`."""

    def __init__(self, json_path: str | Path, media_folder: str | Path | None = None, *, on_error: OnError = "raise",
                 allow_outside_media_folder: bool = False) -> None:
        super().__init__(json_path, on_error=on_error, media_folder=media_folder,
                         allow_outside_media_folder=allow_outside_media_folder)

    def _read_file(self, path: Path) -> Iterator[Sample | DataError]:
        try:
            rows = load_json(path)
        except DataError as e:
            yield e
            return
        if not isinstance(rows, list):
            yield DataError(f"{path}: a LLaVA file must hold a JSON list, got {type(rows).__name__}")
            return
        root = self.media_root(path)
        for i, row in enumerate(rows):
            where = f"{path}[{i}]"
            try:
                yield llava_sample(row, where, root)
            except DataError as e:
                yield located(where, e)

    def index(self, tasks: set[str] | None = None):
        """Byte spans of the array's elements (24 bytes each); a row is parsed when it is asked for."""
        from mmgpt.datasets.readers.index import ArrayIndex

        return ArrayIndex(self.paths, [self.media_root(p) for p in self.paths], llava_sample, tasks)


def read_llava(
    json_path: str | Path, media_folder: str | Path | None = None, *, on_error: OnError = "raise",
    allow_outside_media_folder: bool = False,
) -> LlavaReader:
    """Read LLaVA-style conversation JSON (``llava_instruct_150k.json`` and the like).

    Rules:

    * ``from`` maps ``human`` -> ``user``, ``gpt`` -> ``assistant``, ``system`` -> ``system``
      (``user`` and ``assistant`` are accepted as themselves).
    * Each ``<image>`` marker in a human turn becomes an image segment at that position; the
      text before and after is kept, except one newline right after the marker.
    * ``image`` is one file name or a list of them; markers take the images in order. Marker
      and image counts must agree. A row with images but no marker gets them all, in order,
      at the start of its first human turn (LLaVA's convention).
    * A marker in a gpt or system turn is an error (the model writes text only).

    The file is loaded whole with ``json.load``. Image paths become absolute
    :class:`pathlib.Path` objects under ``media_folder``; they are not opened. Each sample's
    ``source`` is ``"<file>[<index>]"`` and ``meta`` keeps the row's ``id`` (and any other
    top-level key but ``image`` and ``conversations``).

    Args:
        json_path: a JSON file or a glob of them (read in sorted order).
        media_folder: the directory image names are relative to (default: the JSON's directory);
            given, a name outside it is a bad row unless ``allow_outside_media_folder``.
        on_error: ``"raise"`` on the first bad row, or ``"skip"`` it and count it.

    Returns:
        A :class:`LlavaReader`; iterate it for the samples.

    Raises:
        DataError: the path or glob names no file (at once); while iterating, with
            ``on_error="raise"``, invalid JSON or a bad row, named as ``"<file>[<index>]"``
            with its id.
    """
    return LlavaReader(json_path, media_folder, on_error=on_error, allow_outside_media_folder=allow_outside_media_folder)
