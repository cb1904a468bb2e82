"""The interface every media encoder implements, whatever its modality.

An encoder turns a batch of one modality's items into feature vectors. The rest of mmgpt
(processor, batching, model, feature cache, contrastive stage) talks to encoders only through
this interface, keyed by the modality's name, so a new modality is a new encoder, not new
branches. Shapes: I items, L the longest item along its last axis, N feature vectors per item,
D the encoder width::

    values (I, ..., L) + lengths (I,) -> forward -> features (I, N, D) + lengths (I,)

``values`` are the items of :meth:`MediaEncoder.prepare` stacked and zero-padded along their
last axis (:func:`mmgpt.batching.pad_stack`); ``lengths`` are each item's size along it.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

TokenLayout = Literal["grid", "sequence"]


class MediaEncoder(nn.Module):
    """Base class of the vision and audio encoders.

    Attributes:
        modality: the name everything per modality is keyed by (``"image"``, ``"audio"``).
        token_layout: ``"grid"``: the features of an item are a square patch grid (an adapter
            may pixel-shuffle them); ``"sequence"``: a sequence in time (it may stack frames).
    """

    modality: str = ""
    token_layout: TokenLayout = "sequence"

    @property
    def output_dim(self) -> int:
        """Feature width D."""
        raise NotImplementedError

    @property
    def fixed_tokens(self) -> int | None:
        """N when every item gives the same number of feature vectors (images), else None."""
        return None

    def num_tokens(self, length: int) -> int:
        """Feature vectors N for one item whose last axis is ``length`` long."""
        raise NotImplementedError

    def prepare(self, decoded: Any) -> torch.Tensor:
        """One decoded item (from :mod:`mmgpt.datasets.media`) -> this encoder's input tensor."""
        raise NotImplementedError

    def load_options(self) -> dict[str, Any]:
        """Keyword arguments for the modality's decoder in :mod:`mmgpt.datasets.media`."""
        return {}

    def make_portable(self, settings: Any) -> None:
        """Make ``settings`` (a copy of this encoder's config section) rebuild the encoder without
        outside files: a pretrained path is dropped (the weights travel in the checkpoint)."""
        if hasattr(settings, "pretrained_path"):
            settings.pretrained_path = None

    def dummy_input(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """One blank item as ``(values, lengths)``: a batch of one."""
        raise NotImplementedError

    def forward(self, values: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(I, ..., L) values + (I,) lengths -> (I, N, D) features + (I,) feature lengths."""
        raise NotImplementedError
