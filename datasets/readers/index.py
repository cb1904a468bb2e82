"""Random access to a dataset's rows without holding them: row indexes built in one light pass.

Training draws samples by index (a seeded permutation per epoch), so it needs ``len`` and
``data[i]``; reading every row into a list first costs memory in proportion to the data (about
3.4 KiB per ShapesTones chat as Python objects). An index keeps only where each row starts:

* JSONL: byte offsets and line numbers of the non-blank lines (16 bytes a row);
* LLaVA JSON (one big array): byte spans of the array's elements, found by a scan that skips
  strings and counts brackets (24 bytes a row);
* plain ``.tar`` WebDataset shards: where each key's members lie, from the tar headers alone;
* other formats (COCO, caption CSV, compressed shards) are read once into a list.

A row is read and parsed only when it is asked for, so a malformed row is reported then (with
its file and line), as a ``DataError``; ``mmgpt data check`` finds them all up front. A task
filter is applied while indexing, from the raw bytes of each row (its ``"task"`` value), without
parsing the row.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import mmap
import re
from array import array
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from mmgpt.datasets.readers.base import MediaRoot, located
from mmgpt.datasets.schema import Sample
from mmgpt.errors import DataError

_TASK = re.compile(rb'"task"\s*:\s*("(?:[^"\\]|\\.)*")')
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def raw_task(raw: bytes) -> str | None:
    """The ``"task"`` string of a row's raw JSON bytes (in ``meta`` or at the top), or None."""
    m = _TASK.search(raw)
    if m is None:
        return None
    try:
        return json.loads(m.group(1))
    except ValueError:
        return None


class RowIndex(Sequence[Sample]):
    """A sequence of samples read on access. Subclasses set :meth:`__len__` and :meth:`sample`."""

    def sample(self, i: int) -> Sample:
        raise NotImplementedError

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return Subset(self, range(len(self))[i])
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"row {i} of {n}")
        return self.sample(i % n)


class Subset(RowIndex):
    """Rows ``positions`` of another sequence, read on access (a slice of an index)."""

    def __init__(self, base: Sequence[Sample], positions: range | Sequence[int]) -> None:
        self.base, self.positions = base, positions

    def __len__(self) -> int:
        return len(self.positions)

    def sample(self, i: int) -> Sample:
        return self.base[self.positions[i]]


class Mapped(RowIndex):
    """``fn(row)`` of every row of another sequence, computed on access."""

    def __init__(self, base: Sequence[Sample], fn: Callable[[Sample], Sample]) -> None:
        self.base, self.fn = base, fn

    def __len__(self) -> int:
        return len(self.base)

    def sample(self, i: int) -> Sample:
        return self.fn(self.base[i])


@contextlib.contextmanager
def mapped(path: Path):
    """The bytes of ``path`` as a read-only memory map (an empty file is a ``DataError``)."""
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        yield data


class _Files:
    """Which file each row is in: rows are stored file after file, so a bisect finds it."""

    def __init__(self) -> None:
        self.paths: list[Path] = []
        self.roots: list[MediaRoot] = []
        self.ends: list[int] = []  # rows before the end of each file

    def add(self, path: Path, root: MediaRoot, rows_so_far: int) -> None:
        self.paths.append(path)
        self.roots.append(root)
        self.ends.append(rows_so_far)

    def of(self, row: int) -> int:
        return bisect.bisect_right(self.ends, row)


class JsonlIndex(RowIndex):
    """Byte offsets of the rows of JSONL files (see the module docstring).

    Args:
        paths: the files, in order.
        roots: how each file's media paths resolve.
        parse: ``parse(row_object, source, resolve) -> Sample`` (the native row parser).
        tasks: keep only rows whose ``"task"`` is one of these (None: every row).
    """

    def __init__(self, paths: list[Path], roots: list[MediaRoot], parse: Callable[..., Sample],
                 tasks: set[str] | None = None) -> None:
        self.parse = parse
        self.offsets, self.lines = array("q"), array("q")
        self.files = _Files()
        for path, root in zip(paths, roots):
            with path.open("rb") as f:
                at = 0
                for lineno, raw in enumerate(f, start=1):
                    if raw.strip() and (tasks is None or raw_task(raw) in tasks):
                        self.offsets.append(at)
                        self.lines.append(lineno)
                    at += len(raw)
            self.files.add(path, root, len(self.offsets))

    def __len__(self) -> int:
        return len(self.offsets)

    def __iter__(self):
        """Every row in order, each file opened once (a pass over the data, e.g. to train a tokenizer)."""
        start = 0
        for k, end in enumerate(self.files.ends):
            with self.files.paths[k].open("rb") as f:
                for i in range(start, end):
                    f.seek(self.offsets[i])
                    yield self._parse(i, k, f.readline())
            start = end

    def sample(self, i: int) -> Sample:
        k = self.files.of(i)
        with self.files.paths[k].open("rb") as f:
            f.seek(self.offsets[i])
            return self._parse(i, k, f.readline())

    def _parse(self, i: int, k: int, raw: bytes) -> Sample:
        path, root = self.files.paths[k], self.files.roots[k]
        where = f"{path}:{self.lines[i]}"
        try:
            line = raw.decode("utf-8-sig" if self.lines[i] == 1 else "utf-8")
            row = json.loads(line)
        except UnicodeDecodeError as e:
            raise DataError(f"{where}: not UTF-8 ({e.reason} at byte {e.start})") from None
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: invalid JSON at column {e.colno}: {e.msg}") from None

        def resolve(seg) -> Any:
            return root(seg.media) if isinstance(seg.media, str) else seg.media

        try:
            return self.parse(row, where, resolve)
        except DataError as e:
            raise located(where, e) from None


def array_elements(data: bytes | mmap.mmap, source: str) -> list[tuple[int, int]]:
    """Byte spans ``(start, end)`` of the elements of a JSON array of objects, by a scan that
    skips strings and counts brackets (nothing is parsed).

    Raises:
        DataError: the text is not an array of objects, or its brackets do not balance.
    """
    spans, depth, start = [], 0, 0
    for m in _TOKENS.finditer(data):
        c = data[m.start()]
        if c == 0x22:  # a string: skipped whole by the pattern
            continue
        if c in (0x5B, 0x7B):  # [ {
            if depth == 0 and c != 0x5B:
                raise DataError(f"{source}: a LLaVA file must hold a JSON list")
            if depth == 1:
                if c != 0x7B:
                    raise DataError(f"{source}[{len(spans)}]: expected an object")
                start = m.start()
            depth += 1
        else:
            depth -= 1
            if depth == 1:
                spans.append((start, m.end()))
            if depth < 0:
                raise DataError(f"{source}: unbalanced brackets at byte {m.start()}")
    if depth != 0:
        raise DataError(f"{source}: truncated JSON (unclosed brackets)")
    return spans


class ArrayIndex(RowIndex):
    """Byte spans of the elements of JSON files holding one array each (LLaVA).

    Args:
        paths: the files, in order.
        roots: how each file's media paths resolve.
        parse: ``parse(row_object, source, root) -> Sample`` (the LLaVA row parser).
        tasks: keep only rows whose ``"task"`` is one of these (None: every row).
    """

    def __init__(self, paths: list[Path], roots: list[MediaRoot], parse: Callable[..., Sample],
                 tasks: set[str] | None = None) -> None:
        self.parse = parse
        self.starts, self.ends, self.numbers = array("q"), array("q"), array("q")
        self.files = _Files()
        for path, root in zip(paths, roots):
            with mapped(path) as data:
                for number, (start, end) in enumerate(array_elements(data, str(path))):
                    if tasks is None or raw_task(data[start:end]) in tasks:
                        self.starts.append(start)
                        self.ends.append(end)
                        self.numbers.append(number)
            self.files.add(path, root, len(self.starts))

    def __len__(self) -> int:
        return len(self.starts)

    def sample(self, i: int) -> Sample:
        k = self.files.of(i)
        path, root = self.files.paths[k], self.files.roots[k]
        where = f"{path}[{self.numbers[i]}]"
        with path.open("rb") as f:
            f.seek(self.starts[i])
            raw = f.read(self.ends[i] - self.starts[i])
        try:
            row = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{where}: invalid JSON row ({e})") from None
        try:
            return self.parse(row, where, root)
        except DataError as e:
            raise located(where, e) from None


TAR_BLOCK = 512
TAR_CHUNK = 1 << 20  # headers are read from 1 MiB windows of the file, never the whole of it
EMPTY_BLOCK = bytes(TAR_BLOCK)
TAR_HEADER_MAX = 1 << 20  # GNU long names and pax records are read whole: cap them


def _tar_number(field: bytes) -> int:
    """A numeric tar header field: octal text, or base-256 when its first byte has the top bit."""
    if field[:1] and field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    text = field.replace(b"\0", b" ").strip()
    return int(text, 8) if text else 0


def _pax(record: bytes) -> dict[str, str]:
    """The ``key=value`` records of a pax extended header."""
    out, at = {}, 0
    while at < len(record):
        space = record.index(b" ", at)
        length = int(record[at:space])
        key, _, value = record[space + 1: at + length - 1].partition(b"=")
        out[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        at += length
    return out


def tar_members(f: BinaryIO, source: str) -> Iterable[tuple[str, int, int]]:
    """``(name, data offset, size)`` of every regular file of an uncompressed tar (an open binary
    file), from its headers alone: GNU long names and pax ``path`` / ``size`` records understood,
    member contents skipped (read through the buffer, never mapped, so memory stays flat).

    Raises:
        DataError: a header whose checksum is wrong, or a tar that ends without its end marker.
    """
    pos, long_name, pax = 0, None, {}
    window, window_at = b"", 0  # the file from byte window_at on, read a chunk at a time

    def read(at: int, n: int) -> bytes:
        nonlocal window, window_at
        if not window_at <= at or at + n > window_at + len(window):
            f.seek(at)
            window, window_at = f.read(max(n, TAR_CHUNK)), at
        return window[at - window_at: at - window_at + n]

    while True:
        header = read(pos, TAR_BLOCK)
        if len(header) < TAR_BLOCK:
            raise DataError(f"{source}: truncated tar (no end-of-archive marker after byte {pos})")
        if header == EMPTY_BLOCK:
            return
        # the checksum counts its own 8 bytes as spaces (8 x 32)
        if _tar_number(header[148:156]) != sum(header) - sum(header[148:156]) + 256:
            raise DataError(f"{source}: garbled tar header at byte {pos}")
        size, kind = _tar_number(header[124:136]), header[156:157]
        start = pos + TAR_BLOCK
        if kind in (b"L", b"K", b"x", b"g") and size > TAR_HEADER_MAX:
            raise DataError(f"{source}: a {size:,}-byte name or pax header at byte {pos}, over the "
                            f"{TAR_HEADER_MAX:,}-byte cap")
        if kind == b"L":
            long_name = read(start, size).rstrip(b"\0").decode("utf-8", "replace")
        elif kind in (b"x", b"g"):
            pax = _pax(read(start, size)) if kind == b"x" else pax
        else:
            name = header[:100].rstrip(b"\0").decode("utf-8", "replace")
            prefix = header[345:500].rstrip(b"\0").decode("utf-8", "replace") if header[257:262] == b"ustar" else ""
            name = pax.get("path") or long_name or (f"{prefix}/{name}" if prefix else name)
            size = int(pax.get("size", size))
            if kind in (b"0", b"\0", b"7"):
                yield name, start, size
            long_name, pax = None, {}
        pos = start + -(-size // TAR_BLOCK) * TAR_BLOCK


class TarIndex(RowIndex):
    """The keys of uncompressed WebDataset shards: where each key's members lie, read on access.

    Args:
        paths: the shards (plain ``.tar``), in order.
        key_of: ``member name -> (key, extension)`` (the WebDataset grouping rule).
        build: ``build(shard, key, [(extension, bytes), ...]) -> Sample``.
    """

    def __init__(self, paths: list[Path], key_of: Callable[[str], tuple[str, str]],
                 build: Callable[[Path, str, list[tuple[str, bytes]]], Sample],
                 too_big: Callable[[int], bytes] | None = None, max_member: int | None = None) -> None:
        self.build, self.too_big, self.max_member = build, too_big, max_member
        self.keys: list[str] = []
        self.first = array("q")  # index of each key's first member
        self.offsets, self.sizes, self.ext_ids = array("q"), array("q"), array("I")
        self.exts: dict[str, int] = {}
        self.files = _Files()
        for path in paths:
            with path.open("rb", buffering=0) as f:  # tar_members reads 1 MiB windows itself
                last = None
                for name, offset, size in tar_members(f, str(path)):
                    key, ext = key_of(name)
                    if key != last:
                        self.keys.append(key)
                        self.first.append(len(self.offsets))
                        last = key
                    self.offsets.append(offset)
                    self.sizes.append(size)
                    self.ext_ids.append(self.exts.setdefault(ext, len(self.exts)))
            self.files.add(path, MediaRoot(path.parent), len(self.keys))
        self.first.append(len(self.offsets))
        self.ext_names = list(self.exts)

    def __len__(self) -> int:
        return len(self.keys)

    def sample(self, i: int) -> Sample:
        path = self.files.paths[self.files.of(i)]
        members = []
        with path.open("rb") as f:
            for m in range(self.first[i], self.first[i + 1]):
                size = self.sizes[m]
                if self.max_member is not None and size > self.max_member:  # refused unread
                    members.append((self.ext_names[self.ext_ids[m]], self.too_big(size)))
                    continue
                f.seek(self.offsets[m])
                members.append((self.ext_names[self.ext_ids[m]], f.read(size)))
        return self.build(path, self.keys[i], members)
