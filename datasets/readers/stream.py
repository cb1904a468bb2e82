"""Tar shards as streams: samples read a shard at a time, in tar order, never held whole.

Compressed shards (``.tar.gz``, ...) cannot be read out of order, so they cannot be indexed
(:mod:`mmgpt.datasets.readers.index`); a training run reads them as streams instead, each
stream a sequence of shards (``mmgpt.train.stream`` decides which and shuffles within a
buffer). This module only reads: one shard's samples with a task filter, or every shard's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mmgpt.datasets.readers.webdataset import WebDatasetReader
from mmgpt.datasets.schema import Sample
from mmgpt.errors import DataError


class ShardStream:
    """The samples of a reader's tar shards, read when iterated.

    Args:
        reader: the shards (a :class:`WebDatasetReader`; its ``on_error`` applies to iteration).
        tasks: keep only samples whose ``meta["task"]`` is one of these (None: all).
    """

    def __init__(self, reader: WebDatasetReader, tasks: set[str] | None = None) -> None:
        self.reader, self.tasks = reader, tasks
        self.shards: list[Path] = list(reader.paths)
        if not self.shards:
            raise DataError(f"{reader}: no shards to stream")

    @property
    def on_error(self) -> str:
        return self.reader.on_error

    def read(self, shard: Path) -> Iterator[Sample | DataError]:
        """One shard's samples (tasks filtered) and bad keys, in tar order."""
        for got in self.reader.read_shard(shard):
            if isinstance(got, Sample) and self.tasks is not None and got.meta.get("task") not in self.tasks:
                continue
            yield got

    def __iter__(self) -> Iterator[Sample]:
        """Every shard's good samples in order (a bad key raises under ``on_error="raise"``)."""
        for shard in self.shards:
            for got in self.read(shard):
                if isinstance(got, DataError):
                    if self.on_error == "raise":
                        raise got
                    continue
                yield got

    def __repr__(self) -> str:
        return f"ShardStream({len(self.shards)} shards of {self.reader!r}, tasks={sorted(self.tasks or []) or None})"
