"""Training on streamed tar shards: shards dealt to streams, a shuffle buffer, exact resume.

Compressed WebDataset shards cannot be read out of order, so they cannot be drawn by index as
:class:`~mmgpt.train.data.Schedule` draws; they are read as streams (as WebDataset and
torchdata do), and this module makes those streams deterministic and resumable:

* ``S = min(data.streams, shards)`` streams. In epoch ``e`` the shards are put in a seeded
  order (seed, e) and stream ``s`` reads every S-th of them from position ``s``. Process
  ``rank`` of ``world`` owns streams ``rank, rank + world, ...``; its data workers share
  those streams (worker ``w`` of ``W`` takes every W-th; W is cut to a divisor of the
  process's stream count), so the shards a process or worker reads are its own.
* A stream's samples pass through a shuffle buffer of ``data.shuffle_buffer`` samples: once
  full, each new sample pushes out a seeded random one; at the end of the epoch the rest
  come out in seeded random order, so each epoch starts with an empty buffer and the samples
  of an epoch are each read once.
* A process's micro-batch ``m`` (``step * grad_accum + k``) comes from its stream
  ``m mod S_local``, so which stream feeds which step does not depend on the number of
  workers: the losses are those of ``num_workers=0``.
* A stream's position is ``(epoch, samples taken from the buffer this epoch)``. The position
  after each micro-batch goes into the training checkpoint; a resume re-reads the stream's
  shards of that epoch up to the position (tar members only: nothing is decoded) and goes on
  exactly where the interrupted run would have.

Bad samples (a key that does not parse, media that do not decode) are skipped with
``data.on_error=skip`` (the batch takes the next sample of its stream) and reported like
indexed data's, keyed by the sample's error message.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mmgpt.datasets.readers.stream import ShardStream
from mmgpt.datasets.schema import Sample
from mmgpt.errors import CheckpointError, DataError, MMGPTError

Position = tuple[int, int]  # (epoch, samples taken from the stream's buffer in that epoch)
MIN_JUDGED = 1000  # bad fractions of a stream are judged against at least this many samples


def _seed(*parts: int) -> int:
    """A 64-bit seed from integers, the same in every process and Python version."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


@dataclass
class StreamPlan:
    """Which shards each stream reads, and which streams a process owns.

    Args:
        num_shards: shards in the dataset (streams index into the stream source's shard list).
        streams: streams wanted (cut to ``num_shards``).
        world_size, rank: the process group.
        seed: the run's seed.
        buffer: the shuffle buffer's size in samples.
    """

    num_shards: int
    streams: int
    world_size: int = 1
    rank: int = 0
    seed: int = 0
    buffer: int = 1000
    count: int = field(init=False)

    def __post_init__(self) -> None:
        self.count = min(self.streams, self.num_shards)
        if self.count < self.world_size:
            raise DataError(f"{self.num_shards} shards cannot feed {self.world_size} processes: each process "
                            f"streams its own shards (split the data into at least {self.world_size} shards)")

    def local(self) -> list[int]:
        """The streams this process owns, in the order its micro-batches use them."""
        return list(range(self.rank, self.count, self.world_size))

    def shards(self, stream: int, epoch: int) -> list[int]:
        """The shard numbers stream ``stream`` reads in epoch ``epoch``, in order."""
        order = list(range(self.num_shards))
        random.Random(_seed(self.seed, epoch)).shuffle(order)
        return order[stream :: self.count]

    def signature(self) -> dict[str, int]:
        """What a saved position depends on (a resume with another plan is refused)."""
        return {"shards": self.num_shards, "streams": self.count, "world_size": self.world_size,
                "seed": self.seed, "buffer": self.buffer}


def shuffled(source: ShardStream, plan: StreamPlan, stream: int, epoch: int) -> Iterator[Sample | DataError]:
    """One epoch of one stream: its shards' samples (and bad keys) through the shuffle buffer."""
    rng = random.Random(_seed(plan.seed, stream, epoch))
    buf: list[Sample | DataError] = []

    def take() -> Sample | DataError:
        j = rng.randrange(len(buf))
        buf[j], buf[-1] = buf[-1], buf[j]
        return buf.pop()

    for shard in plan.shards(stream, epoch):
        for got in source.read(source.shards[shard]):
            buf.append(got)
            if len(buf) >= plan.buffer:
                yield take()
    while buf:
        yield take()


def entries(source: ShardStream, plan: StreamPlan, stream: int, start: Position) -> Iterator[tuple[Any, Position]]:
    """A stream's samples from ``start`` on, epoch after epoch, each with the position after it."""
    epoch, skip = start
    while True:
        taken = 0
        for got in shuffled(source, plan, stream, epoch):
            taken += 1
            if taken > skip:
                yield got, (epoch, taken)
        if taken == 0:
            raise DataError(f"stream {stream} read no samples in epoch {epoch} (its shards are empty or filtered out)")
        epoch, skip = epoch + 1, 0


def stream_batches(source: ShardStream, plan: StreamPlan, stream: int, start: Position, make_item: Callable,
                   batch_size: int) -> Iterator[tuple[list, list, Position]]:
    """``(items, bad, position after)`` of a stream's consecutive micro-batches from ``start``.

    Raises:
        MMGPTError: a bad sample under ``on_error="raise"``.
        DataError: a whole epoch of the stream went by without one good sample.
    """
    it = entries(source, plan, stream, start)
    failing_since: int | None = None  # the epoch of the first of the bad samples since the last good one
    while True:
        items: list = []
        bad: list[tuple[str, str]] = []
        while len(items) < batch_size:
            got, pos = next(it)
            try:
                if isinstance(got, DataError):
                    raise got
                items.append(make_item(got))
                failing_since = None
            except MMGPTError as e:
                if source.on_error != "skip":
                    raise
                # keyed by the sample, so one bad sample counts once and many count as many
                bad.append((getattr(got, "source", None) or str(e), str(e)))
                failing_since = pos[0] if failing_since is None else failing_since
                if pos[0] >= failing_since + 2:  # epoch failing_since + 1 went by without a good sample
                    raise DataError(f"stream {stream}: every sample of epoch {failing_since + 1} failed; "
                                    f"the last: {e}") from None
        yield items, bad, pos


def _identity(x: Any) -> Any:
    return x


class _Streams(IterableDataset):
    """Micro-batches from a process's streams, round-robin in ``order``; a worker takes every
    W-th stream of ``order`` (the DataLoader interleaves its workers in turn, which restores
    ``order``)."""

    def __init__(self, loader: StreamLoader, order: list[int]) -> None:
        self.loader, self.order = loader, order

    def __iter__(self) -> Iterator[tuple[Any, list, int, Position]]:
        info = get_worker_info()
        mine = self.order[info.id :: info.num_workers] if info is not None else self.order
        ld = self.loader
        gens = [stream_batches(ld.source, ld.plan, s, ld.positions[s], ld.make_item, ld.batch_size) for s in mine]
        while True:
            for s, gen in zip(mine, gens):
                items, bad, pos = next(gen)
                yield ld.collate(items), bad, s, pos


class StreamLoader:
    """A process's micro-batches of streamed shards, with the same ``steps`` as
    :class:`~mmgpt.train.loader.StepLoader` (see the module docstring).

    Args:
        source: the shards.
        plan: streams and their shards.
        make_item: a sample -> a training item (may raise an ``MMGPTError``).
        collate: a list of items -> one micro-batch.
        batch_size, grad_accum: micro-batch size and micro-batches per step.
        num_workers, prefetch, pin_memory: as for :class:`~mmgpt.train.loader.StepLoader`.
    """

    def __init__(self, source: ShardStream, plan: StreamPlan, make_item: Callable[[Sample], Any], collate: Callable,
                 batch_size: int, grad_accum: int, num_workers: int = 0, prefetch: int = 2,
                 pin_memory: bool = False) -> None:
        self.source, self.plan, self.make_item, self.collate = source, plan, make_item, collate
        self.batch_size, self.grad_accum = batch_size, grad_accum
        self.num_workers, self.prefetch, self.pin_memory = num_workers, prefetch, pin_memory
        self.positions: dict[int, Position] = {s: (0, 0) for s in plan.local()}
        self.read = 0  # samples (good and bad) in the micro-batches handed out by this process

    def workers(self) -> int:
        """The workers used: ``num_workers`` cut to a divisor of this process's stream count."""
        n = len(self.positions)
        return max((w for w in range(1, n + 1) if n % w == 0 and w <= self.num_workers), default=0)

    def steps(self, start: int, end: int) -> Iterator[tuple[int, list[dict], list]]:
        """``(step, micro-batches, bad samples stepped over)`` for steps ``start..end - 1``."""
        local = self.plan.local()
        first = (start * self.grad_accum) % len(local)
        order = local[first:] + local[:first]
        workers = self.workers()
        extra = {"prefetch_factor": self.prefetch} if workers else {}
        loader = DataLoader(_Streams(self, order), batch_size=None, collate_fn=_identity, num_workers=workers,
                            pin_memory=self.pin_memory, **extra)
        batches = iter(loader)
        for step in range(start, end):
            got = [next(batches) for _ in range(self.grad_accum)]
            for _, bad, stream, pos in got:
                self.positions[stream] = pos
                self.read += self.batch_size + len(bad)
            yield step, [b for b, *_ in got], [x for _, bad, *_ in got for x in bad]

    def state(self) -> dict[str, Any]:
        """The positions to save in a training checkpoint (this process's streams)."""
        return {"plan": self.plan.signature(), "positions": {str(s): list(p) for s, p in self.positions.items()}}

    def restore(self, state: dict[str, Any] | None, where: str) -> None:
        """Continue from positions saved by :meth:`state`.

        Raises:
            CheckpointError: no positions were saved, or they belong to another plan.
        """
        if not state or state.get("plan") != self.plan.signature():
            raise CheckpointError(f"{where}: its stream positions do not fit this run's shards, streams, processes, "
                                  f"seed and shuffle buffer ({state.get('plan') if state else None} vs "
                                  f"{self.plan.signature()}); resume with the same data settings")
        saved = {int(s): (int(p[0]), int(p[1])) for s, p in state["positions"].items()}
        missing = set(self.positions) - set(saved)
        if missing:
            raise CheckpointError(f"{where}: no saved position for streams {sorted(missing)}")
        self.positions = {s: saved[s] for s in self.positions}
