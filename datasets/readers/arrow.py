"""Parquet files and Hugging Face ``datasets`` folders (``save_to_disk``), read with pyarrow.

No conversion and no copy: a ``.parquet`` file is read a row group at a time, a
``save_to_disk`` folder's Arrow files are memory-mapped, and rows are turned into samples when
they are asked for (the ``datasets`` library is not needed to read them). Media columns are
found from the ``huggingface`` feature metadata the files carry (``Image``, ``Audio``, lists of
them), else by name and type (``image`` / ``images`` / ``audio`` holding ``{bytes, path}``
structs or raw bytes). A media value is its ``bytes``; without bytes, its ``path``, resolved
like any row's path (against the media folder, when one is given).

Row layouts, by their columns (the first that applies):

1. ``messages`` (native chat: ``[{role, content}]``): media parts with no payload
   (``{"type": "image"}``) take the row's media in order.
2. ``conversations`` (LLaVA: ``[{from, value}]`` with ``<image>`` markers): as the LLaVA reader.
3. ``texts`` (the_cauldron: ``[{user, assistant}]``): a chat, the row's images at the start
   of the first user turn.
4. A media column and a caption column (``caption``, ``text``, ``sentence``, ``answer``): a
   caption chat; a list of captions gives one sample per caption.

Every other column goes to ``meta``; ``source`` is ``"<file>:<row>"`` (with ``#<k>`` for the
k-th caption of a row).
"""

from __future__ import annotations

import bisect
import json
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmgpt.datasets.readers.base import MediaRoot, OnError, Reader, located
from mmgpt.datasets.readers.captions import AUDIO_PROMPT, IMAGE_PROMPT, caption_samples
from mmgpt.datasets.readers.jsonl import parse_native
from mmgpt.datasets.readers.llava import llava_sample
from mmgpt.datasets.schema import Sample, Segment, Turn
from mmgpt.errors import ConfigError, DataError

CAPTION_COLUMNS = ("caption", "captions", "text", "sentence", "answer")
MEDIA_NAMES = {"image": "image", "images": "image", "img": "image", "audio": "audio", "audios": "audio"}
PROMPTS = {"image": IMAGE_PROMPT, "audio": AUDIO_PROMPT}


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("reading Parquet and Hugging Face datasets needs pyarrow: "
                          "pip install 'mmgpt[arrow]'") from None
    return pa, pq


def is_hf_folder(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``datasets.Dataset.save_to_disk``."""
    return path.is_dir() and (path / "state.json").is_file()


def _feature_kind(spec: Any) -> str | None:
    """``"image"`` / ``"audio"`` for an HF feature spec (or a list of them), else None."""
    if not isinstance(spec, dict):
        return None
    kind = spec.get("_type")
    if kind in ("Image", "Audio"):
        return kind.lower()
    if kind in ("List", "Sequence", "LargeList"):
        return _feature_kind(spec.get("feature"))
    return None


def media_columns(schema) -> dict[str, str]:
    """Column -> modality, from the ``huggingface`` metadata, else by column name and type."""
    meta = (schema.metadata or {}).get(b"huggingface")
    if meta:
        try:
            features = json.loads(meta)["info"]["features"]
            found = {c: k for c, spec in features.items() if (k := _feature_kind(spec))}
            if found:
                return found
        except (ValueError, KeyError, TypeError):
            pass
    return {name: MEDIA_NAMES[name] for name in schema.names if name in MEDIA_NAMES}


class _Tables:
    """Row access to Parquet files (a row group at a time, the last few kept) or memory-mapped
    Arrow files. A *part* is one row group of a Parquet file, or one whole Arrow file."""

    KEEP = 4  # row groups kept per process

    def __init__(self, paths: list[Path]) -> None:
        pa, pq = _pyarrow()
        self.parts: list[tuple[Path, Any, int | None, int]] = []  # (file, source, row group, its first row in file)
        self.ends: list[int] = []  # rows up to the end of each part
        self.schema = None
        for path in paths:
            try:
                if path.suffix == ".parquet":
                    pf = pq.ParquetFile(path)
                    self.schema = self.schema or pf.schema_arrow
                    first = 0
                    for g in range(pf.metadata.num_row_groups):
                        rows = pf.metadata.row_group(g).num_rows
                        self._add((path, pf, g, first), rows)
                        first += rows
                else:
                    table = pa.ipc.open_stream(pa.memory_map(str(path))).read_all()
                    self.schema = self.schema or table.schema
                    self._add((path, table, None, 0), table.num_rows)
            except (OSError, pa.ArrowException) as e:
                raise DataError(f"{path}: not a readable Parquet / Arrow file ({e})") from None
        self.cache: OrderedDict[int, Any] = OrderedDict()

    def _add(self, part: tuple[Path, Any, int | None, int], rows: int) -> None:
        self.parts.append(part)
        self.ends.append((self.ends[-1] if self.ends else 0) + rows)

    def __len__(self) -> int:
        return self.ends[-1] if self.ends else 0

    def row(self, i: int) -> tuple[Path, int, dict]:
        """(file, row number in the file, the row as Python values) of row ``i``."""
        k = bisect.bisect_right(self.ends, i)
        r = i - (self.ends[k - 1] if k else 0)
        path, source, group, first = self.parts[k]
        if group is None:
            table = source
        else:
            table = self.cache.pop(k, None) or source.read_row_group(group)
            self.cache[k] = table
            while len(self.cache) > self.KEEP:
                self.cache.popitem(last=False)
        return path, first + r, table.slice(r, 1).to_pylist()[0]


def _payload(value: Any, root: MediaRoot, what: str) -> Any:
    """The media of one stored value: its bytes, else its resolved path."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("array") is not None and value.get("sampling_rate"):
            import numpy as np

            return np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
        if value.get("path"):
            return root(value["path"])
    raise DataError(f"{what}: no bytes and no path")


class ArrowReader(Reader):
    """Samples of Parquet files or a ``save_to_disk`` folder; see :func:`read_arrow`."""

    def __init__(self, path: str | Path, *, on_error: OnError = "raise", media_folder: str | Path | None = None,
                 allow_outside_media_folder: bool = False) -> None:
        folder = Path(path) if is_hf_folder(Path(path)) else None
        files = None
        if folder is not None:  # a save_to_disk folder: its Arrow files, as state.json lists them
            try:
                files = [folder / f["filename"] for f in json.loads((folder / "state.json").read_text())["_data_files"]]
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(f"{folder}/state.json: not a datasets folder ({e})") from None
            if not files:
                raise DataError(f"{folder}: the dataset has no data files")
            path = files[0]
        super().__init__(path, on_error=on_error, media_folder=media_folder,
                         allow_outside_media_folder=allow_outside_media_folder)
        if files is not None:
            self.paths = files
        self.folder = folder
        self._tables: _Tables | None = None

    @property
    def tables(self) -> _Tables:
        if self._tables is None:
            self._tables = _Tables(self.paths)
        return self._tables

    def _units(self) -> list[tuple[int, int | None]]:
        """(row, caption number or None) of every sample: a list of captions is one sample each."""
        tables = self.tables
        caption = next((c for c in CAPTION_COLUMNS if c in tables.schema.names), None)
        layout_cols = {"messages", "conversations", "texts"} & set(tables.schema.names)
        if caption is None or layout_cols or not media_columns(tables.schema):
            return [(i, None) for i in range(len(tables))]
        units = []
        for i in range(len(tables)):
            value = tables.row(i)[2].get(caption)
            units += [(i, k) for k in range(len(value))] if isinstance(value, list) else [(i, None)]
        return units

    def sample_at(self, unit: tuple[int, int | None]) -> Sample:
        """The sample of one (row, caption number)."""
        path, number, row = self.tables.row(unit[0])
        where = f"{path}:{number}" + (f"#{unit[1]}" if unit[1] is not None else "")
        try:
            return _row_sample(row, media_columns(self.tables.schema), self.media_root(path), unit[1], where)
        except DataError as e:
            raise located(where, e) from None

    def media_root(self, path: Path) -> MediaRoot:
        """Stored paths resolve against the media folder, else the dataset folder (or the Parquet file's)."""
        if self.folder is not None and self.media_folder is None:
            return MediaRoot(self.folder.absolute())
        return super().media_root(path)

    def _read_file(self, path: Path) -> Iterator[Sample | DataError]:
        # Captions may span rows of several files: the whole pass is made for the first file.
        if path != self.paths[0]:
            return
        for unit in self._units():
            try:
                yield self.sample_at(unit)
            except DataError as e:
                yield e

    def index(self, tasks: set[str] | None = None):
        """Random access to the samples: rows read (a row group at a time) when drawn."""
        from mmgpt.datasets.readers.index import RowIndex

        reader, units = self, self._units()
        if tasks is not None:
            units = [u for u in units if reader.tables.row(u[0])[2].get("task") in tasks]

        class _Index(RowIndex):
            def __len__(self) -> int:
                return len(units)

            def sample(self, i: int) -> Sample:
                return reader.sample_at(units[i])

        return _Index()


def _media_list(row: dict, kinds: dict[str, str], root: MediaRoot, where: str) -> dict[str, list[Any]]:
    """Each modality's media of a row, in column order (a list column's items in order)."""
    out: dict[str, list[Any]] = {}
    for column, kind in kinds.items():
        value = row.get(column)
        values = value if isinstance(value, list) else [] if value is None else [value]
        out.setdefault(kind, []).extend(_payload(v, root, f"{where}: column {column!r}") for v in values)
    return out


def _row_sample(row: dict, kinds: dict[str, str], root: MediaRoot, caption_no: int | None, where: str) -> Sample:
    media = _media_list(row, kinds, root, where)
    meta = {k: v for k, v in row.items() if k not in kinds and not isinstance(v, (bytes, bytearray))}
    if "messages" in row:
        pending = {kind: iter(items) for kind, items in media.items()}

        def resolve(seg: Segment) -> Any:
            if seg.media in (None, seg.type, "") and seg.type in pending:
                item = next(pending[seg.type], None)
                if item is None:
                    raise DataError(f"more {seg.type} parts than {seg.type} items in the row")
                return item
            return root(seg.media) if isinstance(seg.media, str) else seg.media

        filled = {"messages": _fill(row["messages"]), "meta": {k: v for k, v in meta.items() if k != "messages"}}
        return parse_native(filled, where, resolve)
    if "conversations" in row:
        images = media.get("image", [])
        return llava_sample({**meta, "image": images or None, "conversations": row["conversations"]}, where,
                            lambda item: item)
    if "texts" in row:
        turns = []
        for k, t in enumerate(row["texts"] or []):
            user = [Segment("image", media=m) for m in media.get("image", [])] if k == 0 else []
            turns += [Turn("user", [*user, Segment("text", text=str(t.get("user", "")))]),
                      Turn("assistant", [Segment("text", text=str(t.get("assistant", "")))])]
        if not turns:
            raise DataError("'texts' is empty")
        return Sample(turns, {k: v for k, v in meta.items() if k != "texts"}, where)
    caption_col = next((c for c in CAPTION_COLUMNS if c in row), None)
    if caption_col is None or not media:
        raise DataError(f"no layout fits the columns {sorted(row)} (messages, conversations, texts, or media + "
                        f"one of {', '.join(CAPTION_COLUMNS)})")
    captions = row[caption_col] if isinstance(row[caption_col], list) else [row[caption_col]]
    caption = captions[caption_no or 0] if captions else None
    if not isinstance(caption, str) or not caption.strip():
        raise DataError(f"empty {caption_col!r}")
    if len(media) != 1:
        raise DataError("a caption row with both images and audio: use a 'messages' column to place them")
    (kind, items), = media.items()
    meta = {k: v for k, v in meta.items() if k != caption_col}
    (sample,) = caption_samples(kind, items, PROMPTS[kind], [caption.strip()], "each", meta, where)
    del sample.meta["caption_index"]
    return sample


def _fill(messages: Any) -> Any:
    """Chat messages whose media parts without a payload say their kind (so they take row media)."""
    if not isinstance(messages, list):
        return messages
    out = []
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            content = [{**p, p["type"]: p.get(p["type"]) or p["type"]}
                       if isinstance(p, dict) and p.get("type") in ("image", "audio") else p for p in content]
            m = {**m, "content": content}
        out.append(m)
    return out


def read_arrow(path: str | Path, *, on_error: OnError = "raise", media_folder: str | Path | None = None,
               allow_outside_media_folder: bool = False) -> ArrowReader:
    """Read ``.parquet`` files (a file or glob) or a ``save_to_disk`` folder (see the module docstring).

    Args:
        path: a Parquet file or glob, or a folder with ``state.json`` and ``*.arrow`` files.
        on_error: ``"raise"`` on the first bad row, or ``"skip"`` it and count it.
        media_folder, allow_outside_media_folder: where stored media paths (rows without bytes)
            point; see :class:`~mmgpt.datasets.readers.base.Reader`.

    Returns:
        An :class:`ArrowReader`; iterate it, or ``.index()`` it for random access.

    Raises:
        ConfigError: pyarrow is not installed.
        DataError: the path names no file, or a row fits no layout (named ``"<file>:<row>"``).
    """
    return ArrowReader(path, on_error=on_error, media_folder=media_folder,
                       allow_outside_media_folder=allow_outside_media_folder)
