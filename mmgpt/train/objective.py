"""What a training stage optimises, apart from the loop that optimises it.

The trainer (:mod:`mmgpt.train.trainer`) runs steps, accumulation, distribution, checkpoints
and logging for any :class:`Objective`; an objective owns the stage's data (items from
samples), how items become a batch, the loss of a batch, its metrics, and what it adds to or
removes from the model before the final save. Two exist: :class:`~mmgpt.train.lm.LMObjective`
(next-token loss: text, alignment, interleaved and instruction stages) and
:class:`~mmgpt.train.contrastive.ContrastiveObjective` (stage 0b).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mmgpt.datasets.schema import Sample


@dataclass
class StepLoss:
    """The loss of one micro-batch.

    Attributes:
        loss_sum: the loss summed over the batch's targets (a tensor with its graph).
        weight: what ``loss_sum`` is a sum over: target tokens, loss weights, or pairs; the
            trainer divides by its sum over the global batch.
        metrics: extra per-batch numbers for the log (retrieval accuracy...).
    """

    loss_sum: torch.Tensor
    weight: float
    metrics: dict[str, float] = field(default_factory=dict)


class Objective:
    """Base class: the stage's data, batches, loss and save-time changes.

    Attributes:
        module: what the trainer wraps for DDP / FSDP2 and calls in :meth:`loss`.
        shardable: whether it may run under FSDP2 (else DDP only).
        uses_decoder: whether its loss runs the decoder (what ``compile`` compiles).
    """

    module: nn.Module
    shardable: bool = True
    uses_decoder: bool = True

    def dataset(self, samples: list[Sample]) -> Sequence[Any]:
        """The stage's items, one per sample, built on access."""
        raise NotImplementedError

    def group_keys(self, data: Sequence[Any]) -> tuple[list[int], list[int]] | None:
        """(token-length estimates, modality keys) per item for length-grouped batching, or None
        when the objective does not group."""
        return None

    def collate(self, items: list[Any], validation: bool = False) -> dict[str, Any]:
        """Items -> one micro-batch; it carries ``target_weight`` (its share of the normaliser).
        ``validation``: a batch for the validation loss, which is always the plain mean."""
        raise NotImplementedError

    def loss(self, batch: dict[str, Any], module: nn.Module) -> StepLoss:
        """The loss of ``batch`` through ``module`` (the wrapped :attr:`module`)."""
        raise NotImplementedError

    def tokens(self, batch: dict[str, Any]) -> int:
        """Tokens the batch feeds the model (for tokens/s)."""
        raise NotImplementedError

    def flush(self, step: int) -> None:
        """Persist what must survive a resume at ``step`` (called before every checkpoint)."""

    def evaluate(self, model: nn.Module, step: int, final: bool) -> dict[str, float] | None:
        """Generation metrics at ``step`` when due (``final``: the end of the run), else None."""
        return None

    def finalize(self, model: nn.Module) -> set[str]:
        """Undo what the objective added to ``model`` before the final save; returns the
        state-dict prefixes that are not part of the saved model."""
        return set()

    def summary(self) -> dict[str, Any]:
        """What the run's ``summary.json`` records about the objective."""
        return {}
