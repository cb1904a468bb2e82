"""One entry point for every format: pick the reader from the file extension and content."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmgpt.datasets.readers.arrow import ArrowReader, is_hf_folder
from mmgpt.datasets.readers.audio_captions import AudioCaptionsReader
from mmgpt.datasets.readers.base import Reader, expand_paths, load_json
from mmgpt.datasets.readers.coco import CocoCaptionsReader
from mmgpt.datasets.readers.jsonl import JsonlReader
from mmgpt.datasets.readers.llava import LlavaReader
from mmgpt.datasets.readers.webdataset import WebDatasetReader
from mmgpt.errors import DataError

READERS: dict[str, type[Reader]] = {
    "jsonl": JsonlReader,
    "llava": LlavaReader,
    "coco": CocoCaptionsReader,
    "audio_captions": AudioCaptionsReader,
    "webdataset": WebDatasetReader,
    "arrow": ArrowReader,
}
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
SNIFF_CHARS = 1 << 20  # a LLaVA list shows "conversations" within its first row


def _json_format(path: Path) -> str:
    """``"llava"`` or ``"coco"`` from a ``.json`` file's content."""
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        head = f.read(SNIFF_CHARS)
    start = head.lstrip()[:1]
    if start == "[":
        if '"conversations"' in head:
            return "llava"
    elif start == "{":
        data = load_json(path)  # COCO's keys may come after megabytes of "images"
        if isinstance(data, dict) and "images" in data and "annotations" in data:
            return "coco"
    raise DataError(
        f"{path}: unknown JSON dataset (expected a LLaVA list of rows with 'conversations', "
        "or a COCO object with 'images' and 'annotations'); pass format="
    )


def detect_format(path: Path) -> str:
    """The reader name for one file: by extension, and for ``.json`` by content.

    ``.jsonl`` -> ``"jsonl"``; ``.csv`` -> ``"audio_captions"``; ``.tar`` (optionally
    compressed) -> ``"webdataset"``; ``.json`` holding a list whose rows have
    ``conversations`` -> ``"llava"``, an object with ``images`` and ``annotations`` -> ``"coco"``;
    ``.parquet``, or a ``datasets`` ``save_to_disk`` folder -> ``"arrow"``.

    Raises:
        DataError: the extension or the JSON content matches no format.
    """
    if is_hf_folder(path):
        return "arrow"
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "arrow"
    if name.endswith(".jsonl"):
        return "jsonl"
    if name.endswith(".csv"):
        return "audio_captions"
    if name.endswith(TAR_SUFFIXES):
        return "webdataset"
    if name.endswith(".json"):
        return _json_format(path)
    raise DataError(f"{path}: unknown dataset format (extension not .jsonl, .json, .csv, .tar or .parquet)")


def find_datasets(folder: str | Path) -> list[tuple[Path, str | None, str | None]]:
    """The files of ``folder`` (not its subfolders) that look like datasets, by extension.

    Returns:
        ``(path, format, None)`` for each file whose format is detected, ``(path, None, why)``
        for one with a dataset extension whose content is not a dataset (a COCO
        ``instances_*.json`` beside ``captions_*.json``), sorted by name.

    Raises:
        DataError: ``folder`` is not a folder, or holds no file with a dataset extension.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder")
    if is_hf_folder(folder):
        return [(folder, "arrow", None)]
    found: list[tuple[Path, str | None, str | None]] = []
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            if is_hf_folder(path):
                found.append((path, "arrow", None))
            continue
        if not path.name.lower().endswith((".jsonl", ".json", ".csv", ".parquet", *TAR_SUFFIXES)):
            continue
        try:
            found.append((path, detect_format(path), None))
        except DataError as e:
            found.append((path, None, str(e)))
    if not found:
        raise DataError(f"{folder}: no dataset files (.jsonl, .json, .csv, .tar, .parquet, datasets folders)")
    return found


def read_samples(path: str | Path, format: str = "auto", **kwargs: Any) -> Reader:
    """Open any supported dataset file (or glob of files) with the right reader.

    Args:
        path: a file or a glob; with ``format="auto"`` every matched file must have the
            same format.
        format: ``"auto"``, or one of ``"jsonl"``, ``"llava"``, ``"coco"``,
            ``"audio_captions"``, ``"webdataset"``, ``"arrow"`` (Parquet / ``datasets`` folders).
        **kwargs: passed to the reader (``on_error=``, ``media_folder=``, ``mode=``...).

    Returns:
        The reader (an iterable of samples with ``.stats``, ``.skipped`` and ``.errors``).

    Raises:
        DataError: the path or glob names no file, ``format`` is unknown, the format cannot be
            detected, or the matched files have different formats.
        TypeError: a keyword argument the chosen reader does not take.
    """
    if format == "auto" and is_hf_folder(Path(path)):
        format = "arrow"
    if format == "auto":
        formats = {p: detect_format(p) for p in expand_paths(path)}
        found = sorted(set(formats.values()))
        if len(found) > 1:
            raise DataError(f"{path}: the matched files have different formats ({', '.join(found)})")
        format = found[0]
    if format not in READERS:
        raise DataError(f"unknown dataset format {format!r} (expected auto, {', '.join(READERS)})")
    return READERS[format](path, **kwargs)
