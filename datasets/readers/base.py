"""What every dataset reader shares: path and glob expansion, the error policy, read statistics.

A reader is an iterable over :class:`~mmgpt.datasets.schema.Sample` objects. Iterating it
opens its files one after another and yields samples lazily; iterating it again starts a
fresh pass. Each format subclasses :class:`Reader` and implements ``_read_file``, a generator
that yields a ``Sample`` for every good row and a :class:`DataError` (yielded, not raised)
for every bad one, so that :meth:`Reader.__iter__` applies one policy to all formats:

* ``on_error="raise"`` (default): the first bad row raises its ``DataError``.
* ``on_error="skip"``: bad rows are skipped, logged (the first 100) and counted in
  :attr:`Reader.stats` (a :class:`ReadStats`), also reachable as ``reader.skipped`` and
  ``reader.errors``.

An error that spoils a whole file (invalid JSON, a CSV header without a caption column, a
corrupt tar) is one bad "row" too: with ``"skip"`` the rest of that file is skipped and
counted once. A path that does not exist or a glob that matches nothing always raises, when
the reader is built.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mmgpt.datasets.schema import Sample
from mmgpt.errors import ConfigError, DataError

logger = logging.getLogger("mmgpt.datasets.readers")

OnError = Literal["raise", "skip"]
MAX_ERRORS = 100  # error messages kept in ReadStats.errors (the count goes on)


@dataclass
class ReadStats:
    """Counts of the latest pass over a reader.

    Attributes:
        samples: samples yielded so far.
        skipped: bad rows skipped (only with ``on_error="skip"``).
        errors: messages of the first :data:`MAX_ERRORS` skipped rows, each naming file and row.
    """

    samples: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    def record(self, error: DataError) -> None:
        """Count one skipped row and keep its message while fewer than MAX_ERRORS are kept."""
        self.skipped += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(str(error))


_BRACE = re.compile(r"\{([^{}]*)\}")


def expand_braces(text: str) -> list[str]:
    """WebDataset's shard notation: ``a-{000..002}.tar`` -> ``a-000.tar``, ``a-001.tar``,
    ``a-002.tar`` (a number range keeps the first bound's zero padding) and ``{x,y}`` -> both;
    several groups multiply out. A text without such a group is returned as is."""
    m = next((m for m in _BRACE.finditer(text) if ".." in m.group(1) or "," in m.group(1)), None)
    if m is None:
        return [text]
    body = m.group(1)
    lo, sep, hi = body.partition("..")
    if sep and lo.isdigit() and hi.isdigit():
        width = len(lo) if lo.startswith("0") else 0
        step = 1 if int(hi) >= int(lo) else -1
        options = [str(i).zfill(width) for i in range(int(lo), int(hi) + step, step)]
    else:
        options = body.split(",")
    return [x for o in options for x in expand_braces(text[: m.start()] + o + text[m.end():])]


def expand_paths(path: str | Path) -> list[Path]:
    """Turn a file path or a glob into a sorted list of files.

    Args:
        path: a file, or a pattern with ``*``, ``?`` or ``[`` (``**`` recurses), or shard
            ranges ``{000..255}`` / alternatives ``{a,b}`` (:func:`expand_braces`; each file so
            named must exist).

    Returns:
        The existing file itself, or the files the glob matches, sorted by name.

    Raises:
        DataError: the file does not exist, is a directory, or the glob matches no file.
    """
    text = str(path)
    literal = Path(text)
    if literal.is_file():
        return [literal]
    if (named := expand_braces(text)) != [text]:
        missing = [p for p in named if not Path(p).is_file() and not any(c in p for c in "*?[")]
        if missing:
            raise DataError(f"{text}: {len(missing)} of the {len(named)} files it names do not exist "
                            f"(first: {missing[0]})")
        return sorted({p for n in named for p in expand_paths(n)})
    if literal.is_dir():
        raise DataError(f"{text} is a directory; pass a file or a glob such as {text}/*.jsonl")
    if any(c in text for c in "*?["):
        matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not matches:
            raise DataError(f"glob {text!r} matches no file")
        return matches
    raise DataError(f"{text}: no such file")


def located(where: str, error: DataError) -> DataError:
    """Prefix ``error``'s message with the row location, unless it already starts with it."""
    message = str(error)
    return error if message.startswith(where) else DataError(f"{where}: {message}")


def resolve_media_path(ref: str | Path, base_dir: Path) -> Path | str:
    """Resolve a media reference against ``base_dir``; URLs (``scheme://...``) stay strings.

    Absolute paths are kept as they are (``base_dir / absolute`` is the absolute path).
    """
    if isinstance(ref, str) and "://" in ref:
        return ref
    return base_dir / ref


@dataclass(frozen=True)
class MediaRoot:
    """Where the relative media paths of a data file point.

    Without a media folder: the data file's own folder, any path allowed (absolute paths and
    ``..`` as written). With one (``confined``): paths are relative to it, and one that is
    absolute or climbs out of it with ``..`` is refused, so a dataset cannot make training read
    files elsewhere on the machine unless the user allows it.

    Attributes:
        folder: the folder relative paths are resolved against.
        confined: refuse paths outside ``folder``.
    """

    folder: Path
    confined: bool = False

    def __call__(self, ref: str | Path) -> Path | str:
        """The resolved path of ``ref`` (URLs stay strings).

        Raises:
            DataError: ``confined`` and ``ref`` is absolute or leaves the folder.
        """
        if isinstance(ref, str) and "://" in ref:
            return ref
        path = self.folder / ref
        if self.confined:
            inside = os.path.normpath(path).startswith(os.path.join(os.path.normpath(self.folder), ""))
            if Path(ref).is_absolute() or not inside:
                raise DataError(f"media path {str(ref)!r} is outside the media folder {self.folder} (absolute, "
                                "or leaving it with '..'); set data.allow_outside_media_folder=true "
                                "(--allow-outside-media-folder) to read it")
        return path


def load_json(path: Path) -> Any:
    """Load a whole JSON file (UTF-8, a byte-order mark allowed).

    Raises:
        DataError: the file is not valid JSON; the message gives the line and column.
    """
    try:
        with path.open(encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise ConfigError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")


class Reader:
    """Base of the format readers: an iterable of samples with an error policy and stats.

    Args:
        path: a data file or a glob of data files (read in sorted order).
        on_error: ``"raise"`` on the first bad row, or ``"skip"`` it and count it.
        media_folder: the folder relative media paths of every row are relative to (COCO's
            ``train2017/``, Clotho's ``development/``); default each data file's own folder.
            Given, a row's path that is absolute or leaves it with ``..`` is a bad row.
        allow_outside_media_folder: accept such paths anyway.

    Attributes:
        paths: the files this reader reads, in order.
        on_error: the error policy.
        stats: a :class:`ReadStats` of the latest (or current) pass.

    Raises:
        DataError: the path does not exist or the glob matches nothing; the media folder is
            not a folder.
        ConfigError: ``on_error`` is not ``"raise"`` or ``"skip"``.
    """

    def __init__(self, path: str | Path, *, on_error: OnError = "raise", media_folder: str | Path | None = None,
                 allow_outside_media_folder: bool = False) -> None:
        check_choice("on_error", on_error, ("raise", "skip"))
        self.paths = expand_paths(path)
        self.on_error = on_error
        self.stats = ReadStats()
        self.media_folder = None if media_folder is None else Path(media_folder).absolute()
        if self.media_folder is not None and not self.media_folder.is_dir():
            raise DataError(f"media folder {media_folder} is not a folder")
        self.allow_outside_media_folder = allow_outside_media_folder

    def media_root(self, path: Path) -> MediaRoot:
        """How the media paths of data file ``path`` resolve (see :class:`MediaRoot`)."""
        if self.media_folder is None:
            return MediaRoot(path.absolute().parent)
        return MediaRoot(self.media_folder, confined=not self.allow_outside_media_folder)

    @property
    def skipped(self) -> int:
        """Rows skipped in the latest pass."""
        return self.stats.skipped

    @property
    def errors(self) -> list[str]:
        """Messages of the first rows skipped in the latest pass."""
        return self.stats.errors

    def __iter__(self) -> Iterator[Sample]:
        """Start a new pass over every file (resetting :attr:`stats`) and yield its samples.

        Raises:
            DataError: a bad row, when ``on_error="raise"``.
        """
        self.stats = stats = ReadStats()
        for path in self.paths:
            items = self._read_file(path)
            try:
                for item in items:
                    if isinstance(item, Sample):
                        stats.samples += 1
                        yield item
                    elif self.on_error == "raise":
                        raise item
                    else:
                        stats.record(item)
                        if stats.skipped <= MAX_ERRORS:
                            logger.warning("skipped bad row: %s", item)
            finally:
                items.close()  # close the file now, also when the caller stops early or on a raise
        if stats.skipped:
            logger.warning(
                "%s: skipped %d bad rows, kept %d samples", type(self).__name__, stats.skipped, stats.samples
            )

    def _read_file(self, path: Path) -> Iterator[Sample | DataError]:
        """Yield a Sample per good row of ``path`` and a DataError per bad row, in file order."""
        raise NotImplementedError

    def index(self, tasks: set[str] | None = None):
        """Random access to the samples (``len``, ``[i]``), keeping those whose ``meta["task"]`` is
        in ``tasks`` (all when None). Formats with a row index read a row only when it is asked
        for (:mod:`mmgpt.datasets.readers.index`); here, the others: one pass, samples kept in
        memory, bad rows handled by ``on_error`` during the pass.

        Returns:
            A sequence of samples (a :class:`~mmgpt.datasets.readers.index.RowIndex` or a list).
        """
        return [s for s in self if tasks is None or s.meta.get("task") in tasks]

    def __repr__(self) -> str:
        first = self.paths[0] if self.paths else None
        return f"{type(self).__name__}({first!s}{' + more' if len(self.paths) > 1 else ''}, on_error={self.on_error!r})"
