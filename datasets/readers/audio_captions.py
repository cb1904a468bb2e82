"""Audio-caption CSV files in the AudioCaps or Clotho layout.

AudioCaps: ``audiocap_id,youtube_id,start_time,caption`` (one caption per row; a clip can
have several rows). Clotho: ``file_name,caption_1,...,caption_5`` (all captions on one row).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgpt.datasets.readers.base import OnError, Reader, located
from mmgpt.datasets.readers.captions import (
    AUDIO_PROMPT,
    CaptionMode,
    caption_samples,
    check_mode,
    clean_caption,
)
from mmgpt.datasets.schema import Sample
from mmgpt.errors import DataError

FILE_COLUMNS = ("file_name", "audio", "path")  # explicit file-name columns, in order of preference
NUMBERED_CAPTION = re.compile(r"caption_(\d+)")


@dataclass(frozen=True)
class CsvLayout:
    """Which columns of a caption CSV hold the file name and the captions.

    Attributes:
        file_column: the column naming the clip.
        suffix: appended to ``file_column``'s value (``".wav"`` for ``youtube_id``, else ``""``).
        caption_columns: ``["caption"]``, or ``caption_1...caption_n`` in numeric order.
    """

    file_column: str
    suffix: str
    caption_columns: tuple[str, ...]


def detect_layout(header: list[str], ext: str) -> CsvLayout:
    """Find the file and caption columns of a header row.

    Captions: a ``caption`` column, else every ``caption_<n>`` column. File: the first of
    ``file_name``, ``audio``, ``path``, else ``youtube_id`` with ``ext`` appended.

    Raises:
        DataError: no caption column, or no file column.
    """
    if "caption" in header:
        captions = ("caption",)
    else:
        numbered = [c for c in header if NUMBERED_CAPTION.fullmatch(c)]
        captions = tuple(sorted(numbered, key=lambda c: int(c.split("_")[1])))
    if not captions:
        raise DataError(f"no 'caption' or 'caption_<n>' column in header {header}")
    file_column = next((c for c in FILE_COLUMNS if c in header), None)
    if file_column is not None:
        return CsvLayout(file_column, "", captions)
    if "youtube_id" in header:
        return CsvLayout("youtube_id", ext, captions)
    raise DataError(f"no file column ({', '.join(FILE_COLUMNS)} or youtube_id) in header {header}")


def _row_cells(row: list[str], header: list[str], layout: CsvLayout) -> tuple[str, list[str], dict[str, Any]]:
    """``(file name, captions, meta)`` of one data row."""
    _checked(row)
    if len(row) != len(header):
        raise DataError(f"expected {len(header)} cells, got {len(row)}")
    cells = dict(zip(header, row))
    name = cells[layout.file_column].strip()
    if not name:
        raise DataError(f"empty '{layout.file_column}' cell")
    captions = [clean_caption(cells[c], f"'{c}' cell") for c in layout.caption_columns]
    meta: dict[str, Any] = {k: v for k, v in cells.items() if k not in layout.caption_columns}
    meta["file_name"] = name + layout.suffix
    return name + layout.suffix, captions, meta


def _checked(row: list[str]) -> list[str]:
    """The row itself, unless a cell holds bytes that were not UTF-8."""
    try:
        "".join(row).encode("utf-8")
    except UnicodeEncodeError as e:
        raise DataError(f"not UTF-8 (byte {e.object[e.start].encode('utf-8', 'surrogateescape')!r})") from None
    return row


class AudioCaptionsReader(Reader):
    """Iterable over the samples of audio-caption CSV files; see :func:`read_audio_captions`."""

    def __init__(
        self, csv_path: str | Path, media_folder: str | Path | None = None, *, mode: CaptionMode = "each",
        prompt: str = AUDIO_PROMPT, ext: str = ".wav", on_error: OnError = "raise",
        allow_outside_media_folder: bool = False,
    ) -> None:
        check_mode(mode)
        super().__init__(csv_path, on_error=on_error, media_folder=media_folder,
                         allow_outside_media_folder=allow_outside_media_folder)
        self.mode = mode
        self.prompt = prompt
        self.ext = ext if ext.startswith(".") or not ext else f".{ext}"

    def _read_file(self, path: Path) -> Iterator[Sample | DataError]:
        root = self.media_root(path)
        groups: dict[str, tuple[str, dict[str, Any], list[str]]] = {}  # file -> (source, meta, captions)
        with path.open("rb") as f:
            # Undecodable bytes become surrogates, so a bad byte spoils its own row, not the file.
            reader = csv.reader(raw.decode("utf-8", "surrogateescape") for raw in f)
            try:
                header = [h.strip() for h in _checked(next(reader, []))]
                header[:1] = [h.removeprefix("\ufeff") for h in header[:1]]
                layout = detect_layout(header, self.ext)
            except (DataError, csv.Error) as e:
                yield DataError(f"{path}:1: {e}")
                return
            while True:
                start = reader.line_num + 1  # a quoted cell may span lines: name the first
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:  # the rest of the file cannot be parsed
                    yield DataError(f"{path}:{start}: unreadable CSV ({e})")
                    return
                where = f"{path}:{start}"
                if not row:
                    continue
                try:
                    name, captions, meta = _row_cells(row, header, layout)
                    media = [root(name)]
                except DataError as e:
                    yield located(where, e)
                    continue
                if self.mode == "each":
                    yield from caption_samples("audio", media, self.prompt, captions, "each", meta, where)
                else:
                    groups.setdefault(name, (where, meta, []))[2].extend(captions)
        for name, (where, meta, refs) in groups.items():
            yield from caption_samples("audio", [root(name)], self.prompt, refs, self.mode, meta, where)


def read_audio_captions(
    csv_path: str | Path, media_folder: str | Path | None = None, *, mode: CaptionMode = "each",
    prompt: str = AUDIO_PROMPT, ext: str = ".wav", on_error: OnError = "raise",
    allow_outside_media_folder: bool = False,
) -> AudioCaptionsReader:
    """Read an audio-caption CSV (AudioCaps or Clotho layout) as audio-captioning chats.

    Layout, from the header:

    * Captions: a ``caption`` column (AudioCaps: one caption per row), else every
      ``caption_<n>`` column in numeric order (Clotho: several captions per row).
    * File name: the first of the ``file_name``, ``audio``, ``path`` columns, used as is;
      else ``youtube_id`` + ``ext`` (AudioCaps: ``{youtube_id}.wav``). Relative names are
      resolved against ``media_folder`` (Clotho's ``development/``) into absolute
      :class:`pathlib.Path` objects (not opened); one outside it (absolute, or with ``..``) is
      a bad row unless ``allow_outside_media_folder``.

    Every sample is ``user: [audio, prompt]`` then ``assistant: caption`` (captions stripped);
    ``meta`` has every non-caption column (``audiocap_id``, ``youtube_id``, ``start_time``...,
    as strings) plus ``file_name`` (the name actually used). Modes:

    * ``"each"`` (training, streamed): one sample per caption cell, ``meta["caption_index"]``
      giving its column; ``source`` is ``"<file>:<line>"``.
    * ``"first"`` / ``"all"`` (evaluation): one sample per clip, grouping every row that names
      the same file (so the whole CSV is read before the first sample), ``meta`` from the
      clip's first row, ``meta["references"]`` = all its captions; ``"first"`` answers with
      the first caption, ``"all"`` has no assistant turn.

    Args:
        csv_path: a CSV file or a glob of them (read in sorted order).
        media_folder: the directory file names are relative to (default: the CSV's directory).
        allow_outside_media_folder: accept file names outside ``media_folder``.
        mode: ``"each"``, ``"first"`` or ``"all"``.
        prompt: the user's instruction after the audio.
        ext: the extension appended to ``youtube_id`` (``"wav"`` or ``".wav"`` alike).
        on_error: ``"raise"`` on the first bad row, or ``"skip"`` it and count it.

    Returns:
        An :class:`AudioCaptionsReader`; iterate it for the samples.

    Raises:
        ConfigError: ``mode`` or ``on_error`` is not a known value.
        DataError: the path or glob names no file (at once); while iterating, with
            ``on_error="raise"``: a header without caption or file column (line 1), a row
            with the wrong number of cells, an empty file cell or an empty caption cell,
            named as ``"<file>:<line>"``.
    """
    return AudioCaptionsReader(
        csv_path, media_folder, mode=mode, prompt=prompt, ext=ext, on_error=on_error,
        allow_outside_media_folder=allow_outside_media_folder,
    )
