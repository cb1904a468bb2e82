"""Feeding the loop: items drawn despite bad samples, and micro-batches built in worker processes.

:class:`Draw` wraps a stage's items (processed samples, contrastive pairs): with
``data.on_error=skip`` an item that fails at step time (an image or clip that does not decode,
a row that does not parse, media that do not fit the context) is replaced by the next good
item after it (index order, wrapping round), so the replacement depends only on the data and
the run stays exactly resumable. Each draw reports the bad rows it stepped over; the trainer
counts them and stops once more than ``data.max_bad_fraction`` of the dataset is bad.

:class:`StepLoader` runs the schedule's micro-batches of steps ``start..end`` through a
``torch.utils.data.DataLoader``: with ``data.num_workers > 0`` reading, decoding, the
processor and collation happen in worker processes, ``prefetch`` micro-batches ahead per
worker, while the main process trains. Batches arrive in schedule order, so the losses are
bitwise those of ``num_workers=0``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader

from mmgpt.errors import DataError, MMGPTError

log = logging.getLogger(__name__)
Bad = tuple[int, str]  # (item index, why it failed)


@dataclass
class Drawn:
    """An item as drawn for a step, and the bad items it stands in for."""

    item: Any
    bad: list[Bad] = field(default_factory=list)


class Draw:
    """Index access to ``data`` that steps over items that fail (see the module docstring).

    Args:
        data: the stage's items (``data[i]`` builds item i and may raise an ``MMGPTError``).
        on_error: ``"raise"`` lets the first failure end the run; ``"skip"`` replaces it.
    """

    def __init__(self, data: Sequence[Any], on_error: str = "raise") -> None:
        self.data = data
        self.on_error = on_error
        self._known_bad: dict[int, str] = {}  # this process's memo: a bad item is not rebuilt

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> Drawn:
        """Item ``i``, or with ``skip`` the first good one after it.

        Raises:
            MMGPTError: the item failed and ``on_error`` is ``raise``.
            DataError: every item of the dataset failed.
        """
        bad: list[Bad] = []
        n = len(self.data)
        for k in range(n):
            j = (i + k) % n
            if j in self._known_bad:
                bad.append((j, self._known_bad[j]))
                continue
            try:
                return Drawn(self.data[j], bad)
            except MMGPTError as e:
                if self.on_error != "skip":
                    raise
                self._known_bad[j] = str(e)
                bad.append((j, str(e)))
        raise DataError(f"every one of the {n} samples failed; the first: {bad[0][1] if bad else '?'}")


class BadCount:
    """The distinct bad items of a run, and the stop once they pass a fraction of the dataset.

    Args:
        size: items in the dataset.
        max_fraction: more bad items than ``max_fraction * size`` stops the run.
    """

    def __init__(self, size: int, max_fraction: float) -> None:
        self.size, self.max_fraction = size, max_fraction
        self.seen: dict[int, str] = {}

    def add(self, bad: list[Bad]) -> None:
        """Count newly seen bad items (logged once each).

        Raises:
            DataError: more than ``max_fraction`` of the dataset is now known bad.
        """
        for index, why in bad:
            if index not in self.seen:
                self.seen[index] = why
                if len(self.seen) <= 20:
                    log.warning("skipped bad sample %d (replaced by the next good one): %s", index, why)
        if len(self.seen) > self.max_fraction * self.size:
            first = next(iter(self.seen.values()))
            raise DataError(f"{len(self.seen)} of {self.size} samples are bad, more than data.max_bad_fraction="
                            f"{self.max_fraction:g}; the first: {first} (run `mmgpt data check` on the data)")


def default_workers(world_size: int = 1, device: torch.device | None = None) -> int:
    """Worker processes per training process: on a GPU, its share of the cores less one for
    itself; on the CPU none, since the step's own threads already use every core (2 workers ran
    0.94x as many steps/s as none on a 2-core host, BENCHMARKS.md)."""
    if device is not None and device.type == "cpu":
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(0, cores // max(world_size, 1) - 1)


class StepLoader:
    """The micro-batches of a run's steps, built in ``num_workers`` processes (0: in this one).

    Args:
        draw: the stage's items (:class:`Draw`).
        micro_batches: ``step -> [index list per micro-batch]`` for this process (the schedule).
        collate: a list of items -> one micro-batch.
        num_workers: worker processes (0: build batches in the training process).
        prefetch: micro-batches each worker prepares ahead.
        pin_memory: page-locked batches for fast, non-blocking copies to a GPU.
    """

    def __init__(self, draw: Draw, micro_batches: Callable[[int], list[list[int]]], collate: Callable,
                 num_workers: int = 0, prefetch: int = 2, pin_memory: bool = False) -> None:
        self.draw, self.micro_batches, self.collate = draw, micro_batches, collate
        self.num_workers, self.prefetch, self.pin_memory = num_workers, prefetch, pin_memory

    def _collate(self, drawn: list[Drawn]) -> tuple[dict, list[Bad]]:
        return self.collate([d.item for d in drawn]), [b for d in drawn for b in d.bad]

    def steps(self, start: int, end: int) -> Iterator[tuple[int, list[dict], list[Bad]]]:
        """``(step, micro-batches, bad items stepped over)`` for steps ``start..end - 1`` in order."""
        sampler = _Steps(self.micro_batches, start, end)
        extra = {"prefetch_factor": self.prefetch} if self.num_workers else {}
        if self.num_workers:  # the tokenizer's own threads and forked workers do not mix
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        loader = DataLoader(self.draw, batch_sampler=sampler, collate_fn=self._collate, num_workers=self.num_workers,
                            pin_memory=self.pin_memory and torch.cuda.is_available(), **extra)
        batches = iter(loader)
        for step in range(start, end):
            got = [next(batches) for _ in self.micro_batches(step)]
            yield step, [b for b, _ in got], [x for _, bad in got for x in bad]


class _Steps:
    """The micro-batches' index lists of steps ``start..end - 1``, made as they are asked for."""

    def __init__(self, micro_batches: Callable[[int], list[list[int]]], start: int, end: int) -> None:
        self.micro_batches, self.start, self.end = micro_batches, start, end

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.end):
            yield from self.micro_batches(step)

    def __len__(self) -> int:  # every step has the same number of micro-batches (grad_accum)
        return len(self.micro_batches(self.start)) * (self.end - self.start) if self.end > self.start else 0
