"""The native format: JSON Lines, one chat or one interleaved document per line.

A chat line::

    {"messages": [{"role": "user", "content": [{"type": "image", "image": "img/cat.png"},
                                               {"type": "text", "text": "What is this?"}]},
                  {"role": "assistant", "content": "A cat."}],
     "meta": {"id": 7}}

A document line: ``{"document": [parts], "meta": {...}}``. Parts are the transformers
content-list format (``text``, ``image``, ``audio``); ``content`` may also be a plain string.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mmgpt.datasets.readers.base import OnError, Reader, located
from mmgpt.datasets.schema import MEDIA_TYPES, Sample, Segment
from mmgpt.errors import DataError

NATIVE_KEYS = ("messages", "document")


def parse_native(row: Any, source: str, resolve: Callable[[Segment], Any]) -> Sample:
    """Build a sample from one native object (a JSONL line, or a ``.json`` in a tar shard).

    ``meta`` comes from the row's ``"meta"`` object; any other top-level key (``"id"``,
    ``"task"``...) is added to it unless ``meta`` already has that key.

    Args:
        row: the decoded JSON object.
        source: where it came from; every error message starts with it.
        resolve: maps each media segment to its final payload (a path, bytes...).

    Returns:
        A chat sample (``messages``) or a document sample (``document``).

    Raises:
        DataError: not an object, not exactly one of ``messages`` / ``document``, ``meta`` not
            an object, or a malformed message or part (bad role, unknown part type...).
    """
    if not isinstance(row, dict):
        raise DataError(f"{source}: expected a JSON object, got {type(row).__name__}")
    present = [k for k in NATIVE_KEYS if k in row]
    if len(present) != 1:
        raise DataError(f"{source}: needs exactly one of 'messages' or 'document', found {present or 'neither'}")
    meta = row.get("meta", {})
    if not isinstance(meta, dict):
        raise DataError(f"{source}: 'meta' must be an object, got {type(meta).__name__}")
    meta = dict(meta)
    for key, value in row.items():
        if key not in (*NATIVE_KEYS, "meta"):
            meta.setdefault(key, value)
    if present[0] == "messages":
        sample = Sample.from_messages(row["messages"], meta, source)
    else:
        sample = Sample.from_document(row["document"], meta, source)
    for _, seg in sample.segments:
        if seg.type in MEDIA_TYPES:
            seg.media = resolve(seg)
    return sample


class JsonlReader(Reader):
    """Iterable over the samples of native JSONL files; see :func:`read_jsonl`."""

    def _read_file(self, path: Path) -> Iterator[Sample | DataError]:
        root = self.media_root(path)

        def resolve(seg: Segment) -> Any:
            return root(seg.media) if isinstance(seg.media, str) else seg.media

        with path.open("rb") as f:  # bytes, so one undecodable line is one bad row
            for lineno, raw in enumerate(f, start=1):
                where = f"{path}:{lineno}"
                try:
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    yield DataError(f"{where}: not UTF-8 ({e.reason} at byte {e.start})")
                    continue
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    yield DataError(f"{where}: invalid JSON at column {e.colno}: {e.msg}")
                    continue
                try:
                    yield parse_native(row, where, resolve)
                except DataError as e:
                    yield located(where, e)

    def index(self, tasks: set[str] | None = None):
        """Byte offsets of the rows (16 bytes each); a row is parsed when it is asked for."""
        from mmgpt.datasets.readers.index import JsonlIndex

        return JsonlIndex(self.paths, [self.media_root(p) for p in self.paths], parse_native, tasks)


def read_jsonl(path: str | Path, *, on_error: OnError = "raise", media_folder: str | Path | None = None,
               allow_outside_media_folder: bool = False) -> JsonlReader:
    """Read native JSONL files lazily, line by line (a file is never loaded whole).

    Blank lines are skipped. Relative media paths are resolved against the directory of the
    JSONL file (or ``media_folder``) and become absolute :class:`pathlib.Path` objects; absolute
    paths and URLs (``scheme://...``) are kept (with a media folder, paths outside it are bad
    rows unless ``allow_outside_media_folder``). Media are not opened. Each sample's ``source`` is
    ``"<file>:<line>"`` (1-based).

    Args:
        path: a ``.jsonl`` file or a glob of them (read in sorted order).
        on_error: ``"raise"`` on the first bad line, or ``"skip"`` it and count it in
            ``reader.stats`` / ``reader.skipped`` / ``reader.errors``.
        media_folder, allow_outside_media_folder: see :class:`~mmgpt.datasets.readers.base.Reader`.

    Returns:
        A :class:`JsonlReader`; iterate it for the samples (each iteration is a new pass).

    Raises:
        DataError: the path or glob names no file (at once); while iterating, with
            ``on_error="raise"``, a line that is not UTF-8, not valid JSON, or not a valid
            chat or document, with ``"<file>:<line>"`` in the message.
    """
    return JsonlReader(path, on_error=on_error, media_folder=media_folder,
                       allow_outside_media_folder=allow_outside_media_folder)
