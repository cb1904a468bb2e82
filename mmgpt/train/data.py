"""Training data: samples from any reader, a deterministic step -> samples schedule, batches.

The schedule is a pure function of (seed, epoch, step): each epoch is a seeded permutation
of the dataset cut into global batches of ``batch_size * grad_accum * world_size`` samples
(the last partial batch is dropped). Process ``rank`` takes its share of each global batch.
Resuming at step s therefore needs nothing but s, and N processes see exactly the samples
one process would.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from mmgpt.batching import collate, collate_packed
from mmgpt.datasets.readers import read_samples
from mmgpt.datasets.schema import Sample, Segment, Turn
from mmgpt.errors import DataError
from mmgpt.processor import Encoded, Processor
from mmgpt.train.config import DataConfig

log = logging.getLogger(__name__)


def load_samples(path: str, cfg: DataConfig) -> list[Sample]:
    """Read every sample of ``path`` (any supported format), keeping ``cfg.tasks`` only.

    Raises:
        DataError: a bad row (with ``on_error="raise"``), or nothing left to train on.
    """
    reader = read_samples(path, format=cfg.format, on_error=cfg.on_error)
    samples = [s for s in reader if cfg.tasks is None or s.meta.get("task") in cfg.tasks]
    if reader.skipped:
        log.warning("%s: skipped %d bad rows (first: %s)", path, reader.skipped, reader.errors[:1])
    if cfg.text_only:
        samples = [t for t in (text_document(s) for s in samples) if t is not None]
    if not samples:
        raise DataError(f"{path}: no samples to train on (tasks filter: {cfg.tasks})")
    return samples


def text_document(sample: Sample) -> Sample | None:
    """The text of a sample as a role-less document (stage 0a trains the decoder on text alone)."""
    texts = [seg.text.strip() for _, seg in sample.segments if seg.type == "text" and seg.text.strip()]
    if not texts:
        return None
    return Sample([Turn(None, [Segment("text", text=" ".join(texts))])], dict(sample.meta), sample.source)


class EncodedDataset:
    """Samples processed on access (media decoded, tokens built); a bad sample names itself."""

    def __init__(self, samples: list[Sample], processor: Processor) -> None:
        self.samples = samples
        self.processor = processor

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Encoded:
        return self.processor(self.samples[i])

    def estimate_length(self, i: int) -> int:
        """Cheap token count (text + media) without decoding media, for length grouping."""
        from mmgpt.datasets.media import audio_duration

        s = self.samples[i]
        n = 8 * len(s.turns)
        for _, seg in s.segments:
            if seg.type == "text":
                n += len(self.processor.encode_text(seg.text))
            elif seg.type == "image":
                n += self.processor.num_media_tokens("image") + 2
            else:
                secs = audio_duration(seg.media)
                n += self.processor.num_media_tokens("audio", int(secs * 16000)) + 2
        return n

    def modality_key(self, i: int) -> int:
        kinds = {seg.type for seg in self.samples[i].media()}
        return ("image" in kinds) + 2 * ("audio" in kinds)


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


def make_batch(items: list[Encoded], pad_id: int, batching: str, max_len: int, weighting: str = "token") -> dict:
    """Collate processed samples: packed rows of ``max_len`` tokens, or one sample per row;
    ``weighting`` is the loss weighting of target tokens (:func:`mmgpt.batching.collate`)."""
    if batching == "pack":
        return collate_packed(items, pad_id, max_len, weighting=weighting)
    return collate(items, pad_id, padding_side="right", weighting=weighting)


MODEL_KEYS = ("input_ids", "attention_mask", "position_ids", "labels", "loss_weights", "pixel_values",
              "audio_values", "audio_lengths", "sequence_ids", "features")


def to_device(batch: dict, device: torch.device) -> dict:
    """The model's inputs of a batch, moved to ``device``."""
    out = {}
    for k in MODEL_KEYS:
        v = batch.get(k)
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
        out[k] = v
    return out
