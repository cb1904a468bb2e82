"""Training data: samples from any reader, and a deterministic step -> samples schedule.

The schedule is a pure function of (seed, epoch, step): each epoch is a seeded permutation
of the dataset cut into global batches of ``batch_size * grad_accum * world_size`` samples
(the last partial batch is dropped). Process ``rank`` takes its share of each global batch.
Resuming at step s therefore needs nothing but s, and N processes see exactly the samples
one process would.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mmgpt.datasets.readers import read_samples
from mmgpt.datasets.readers.index import Mapped
from mmgpt.datasets.readers.stream import ShardStream
from mmgpt.datasets.readers.webdataset import WebDatasetReader
from mmgpt.datasets.schema import Sample, Segment, Turn
from mmgpt.errors import ConfigError, DataError
from mmgpt.train.config import DataConfig

log = logging.getLogger(__name__)


def load_samples(path: str, cfg: DataConfig, media_folder: str | None = None) -> Sequence[Sample]:
    """The samples of ``path`` (any supported format) with ``cfg.tasks`` only, read on access.

    JSONL and LLaVA files are indexed by the byte offset of each row and a row is parsed when
    it is drawn (:mod:`mmgpt.datasets.readers.index`), so the data need not fit in memory; a
    malformed row is then reported when drawn (``data.on_error``). Other formats are read once.

    Args:
        path: the data file or glob.
        cfg: the run's data settings (format, error policy, tasks, text_only...).
        media_folder: where the rows' media paths point (default each data file's folder).

    Raises:
        DataError: a bad row of a format read up front (with ``on_error="raise"``), or nothing
            left to train on.
    """
    reader = read_samples(path, format=cfg.format, on_error=cfg.on_error, media_folder=media_folder,
                          allow_outside_media_folder=cfg.allow_outside_media_folder)
    samples = reader.index(set(cfg.tasks) if cfg.tasks is not None else None)
    if reader.skipped:
        log.warning("%s: skipped %d bad rows (first: %s)", path, reader.skipped, reader.errors[:1])
    if not len(samples):
        raise DataError(f"{path}: no samples to train on (tasks filter: {cfg.tasks})")
    return Mapped(samples, text_document) if cfg.text_only else samples


def open_stream(path: str, cfg: DataConfig, media_folder: str | None = None) -> ShardStream | None:
    """The WebDataset shards of ``path`` as a stream when they are to be streamed, else None
    (``data.streaming``: true streams tar shards, null the compressed ones, false none).

    Raises:
        ConfigError: ``data.streaming=true`` for data that are not tar shards.
        DataError: the path names no file.
    """
    if cfg.streaming is False:
        return None
    reader = read_samples(path, format=cfg.format, on_error=cfg.on_error, media_folder=media_folder,
                          allow_outside_media_folder=cfg.allow_outside_media_folder)
    if not isinstance(reader, WebDatasetReader):
        if cfg.streaming:
            raise ConfigError(f"data.streaming=true streams WebDataset tar shards; {path} is read by "
                              f"{type(reader).__name__}")
        return None
    if cfg.streaming is None and not reader.compressed:
        return None
    return ShardStream(reader, set(cfg.tasks) if cfg.tasks is not None else None)


def text_item(make_item: Callable[[Sample], Any], sample: Sample) -> Any:
    """``make_item`` of the sample's text document (``data.text_only`` on streamed samples)."""
    return make_item(text_document(sample))


def text_document(sample: Sample) -> Sample:
    """The text of a sample as a role-less document (stage 0a trains the decoder on text alone);
    a sample without text gives an empty document (the end-of-text token only)."""
    texts = [seg.text.strip() for _, seg in sample.segments if seg.type == "text" and seg.text.strip()]
    return Sample([Turn(None, [Segment("text", text=" ".join(texts))])], dict(sample.meta), sample.source)


@dataclass
class Schedule:
    """Which samples each step uses, per process and micro-batch."""

    num_samples: int
    batch_size: int
    grad_accum: int
    world_size: int = 1
    seed: int = 0
    group_lengths: list[int] | None = None  # set for length-grouped batching
    group_keys: list[int] | None = None
    _order: tuple[int, list[int]] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.grad_accum * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        steps = self.num_samples // self.global_batch
        if steps == 0:
            raise DataError(f"{self.num_samples} samples are fewer than one global batch of {self.global_batch}")
        return steps

    def total_steps(self, epochs: float, max_steps: int | None) -> int:
        return max_steps if max_steps is not None else max(1, math.ceil(epochs * self.steps_per_epoch))

    def _epoch_order(self, epoch: int) -> list[int]:
        if self._order is not None and self._order[0] == epoch:
            return self._order[1]
        order = self._compute_order(epoch)
        self._order = (epoch, order)
        return order

    def _compute_order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.num_samples, generator=g).tolist()
        if self.group_lengths is None:
            return order
        # LLaVA-style: within mega-batches, sort by (modality, length) so batches are uniform.
        mega = self.global_batch * 32
        out: list[int] = []
        for start in range(0, len(order), mega):
            chunk = order[start : start + mega]
            chunk.sort(key=lambda i: (self.group_keys[i], self.group_lengths[i]))
            batches = [chunk[j : j + self.global_batch] for j in range(0, len(chunk), self.global_batch)]
            perm = torch.randperm(len(batches), generator=g).tolist()
            out.extend(i for b in perm for i in batches[b])
        return out

    def micro_batches(self, step: int, rank: int = 0) -> list[list[int]]:
        """Sample indices of ``rank``'s micro-batches for global step ``step``."""
        epoch, k = divmod(step, self.steps_per_epoch)
        order = self._epoch_order(epoch)
        chunk = order[k * self.global_batch : (k + 1) * self.global_batch]
        mine = chunk[rank * self.batch_size * self.grad_accum : (rank + 1) * self.batch_size * self.grad_accum]
        return [mine[m * self.batch_size : (m + 1) * self.batch_size] for m in range(self.grad_accum)]
