"""Batching: processed samples -> a model batch, padded or packed; the block-diagonal mask.

Shapes: B rows, L row length; per modality I items, L_m the longest item along its last axis.

Batch keys: ``input_ids``, ``labels``, ``position_ids`` (B, L); ``attention_mask`` (B, L) 1 for
real tokens (padded batches); ``sequence_ids`` (B, L) the index of the sample each position
belongs to, -1 on padding (packed batches: the model turns it into a block-diagonal causal
mask, so packed samples never attend to each other); ``media`` ``{modality: (values (I, ...,
L_m), lengths (I,))}`` (:func:`pad_stack` of the items' encoder inputs); ``cached_media``
``{modality: [MediaItem, ...]}`` instead, for a modality whose items went through the
frozen-feature cache (:mod:`mmgpt.feature_cache` turns them into ``features``);
``padding_fraction``; ``num_targets``; ``target_weight`` (the loss normaliser: ``num_targets``
under token weighting); ``loss_weights`` (B, L) per-target weights, only for
``sample``/``square`` weighting; ``meta`` (list of dicts). Media are ordered as their pad
tokens appear row by row, the order in which the model scatters them.

Loss weighting (``weighting``): ``token`` averages over every target token of the batch, so a
40-token caption outweighs a one-word answer 40 to 1; ``sample`` gives each sample the same
total weight (mean over samples of each sample's token mean); ``square`` weights a sample's
tokens by 1/sqrt(its target count), InternVL 2.5's compromise between the two.

Padding is on the right for training and on the left for generation. Packing puts several
samples in one row up to ``max_len`` (first fit, in the given order); position ids restart
per sample and the first label of every sample is -100, so a packed batch has exactly the
targets (and loss) of the same samples padded one per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch

IGNORE = -100
Weighting = Literal["token", "sample", "square"]
WEIGHTINGS: tuple[str, ...] = get_args(Weighting)


def sample_weight(num_targets: int, weighting: str) -> float:
    """Loss weight of each target token of a sample with ``num_targets`` targets."""
    if weighting == "token" or num_targets == 0:
        return 1.0
    if weighting == "sample":
        return 1.0 / num_targets
    if weighting == "square":
        return 1.0 / math.sqrt(num_targets)
    raise ValueError(f"loss weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")


def _add_weights(batch: dict[str, Any], spans: list[tuple[int, slice]], weighting: str) -> None:
    """Set ``num_targets``, ``target_weight`` and (unless token weighting) ``loss_weights``
    from the (row, span) of every sample."""
    labels = batch["labels"]
    target = labels != IGNORE  # (B, L)
    batch["num_targets"] = int(target[:, 1:].sum())
    if weighting == "token":
        batch["target_weight"] = float(batch["num_targets"])
        return
    weights = torch.zeros(labels.shape, dtype=torch.float32)  # (B, L)
    for row, span in spans:
        n = int(target[row, span].sum())
        weights[row, span] = sample_weight(n, weighting)
    weights *= target
    batch["loss_weights"] = weights
    batch["target_weight"] = float(weights[:, 1:].sum())


@dataclass
class MediaItem:
    """One image or clip of a processed sample.

    Attributes:
        values: the encoder's input (:meth:`~mmgpt.encoders.base.MediaEncoder.prepare`), or None
            when ``features`` came from the feature cache.
        features: the encoder's output (N, D), from the feature cache.
        key: the item's feature-cache key, when a cache was consulted for it.
    """

    values: torch.Tensor | None = None
    features: torch.Tensor | None = None
    key: str | None = None


def pad_stack(items: list[torch.Tensor], dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack tensors of equal shape but along ``dim``, zero-padding that axis to the longest.

    Returns:
        (I, ...) values and (I,) lengths: each item's size along ``dim``.
    """
    lengths = torch.tensor([t.shape[dim] for t in items], dtype=torch.long)
    longest = int(lengths.max())
    first = items[0]
    shape = list(first.shape)
    shape[dim] = longest
    out = first.new_zeros(len(items), *shape)
    for i, t in enumerate(items):
        out[i].narrow(dim, 0, t.shape[dim]).copy_(t)
    return out, lengths


def _media(rows: list[list[Any]]) -> dict[str, Any]:
    """``media`` (and ``cached_media``) of a batch from its rows of processed samples."""
    by_modality: dict[str, list[MediaItem]] = {}
    for row in rows:
        for enc in row:
            for modality, items in enc.media.items():
                by_modality.setdefault(modality, []).extend(items)
    media, cached = {}, {}
    for modality, items in by_modality.items():
        if any(it.key is not None for it in items):
            cached[modality] = items
        elif items:
            media[modality] = pad_stack([it.values for it in items])
    return {"media": media, **({"cached_media": cached} if cached else {})}


def collate(encoded: list, pad_id: int, padding_side: Literal["right", "left"] = "right",
            pad_to_multiple_of: int = 1, weighting: Weighting = "token") -> dict[str, Any]:
    """Pad one sample per row.

    Args:
        encoded: :class:`mmgpt.processor.Encoded` samples.
        pad_id: the tokenizer's pad id.
        padding_side: ``right`` for training, ``left`` for generation.
        pad_to_multiple_of: round the row length up (kernels like multiples of 8).
        weighting: loss weighting of target tokens (see the module docstring).
    """
    lengths = [len(e) for e in encoded]
    L = max(lengths)
    L = -(-L // pad_to_multiple_of) * pad_to_multiple_of
    B = len(encoded)
    input_ids = torch.full((B, L), pad_id, dtype=torch.long)
    labels = torch.full((B, L), IGNORE, dtype=torch.long)
    attention_mask = torch.zeros(B, L, dtype=torch.long)
    position_ids = torch.zeros(B, L, dtype=torch.long)
    spans = []
    for i, (e, n) in enumerate(zip(encoded, lengths)):
        sl = slice(L - n, L) if padding_side == "left" else slice(0, n)
        spans.append((i, sl))
        input_ids[i, sl] = e.input_ids
        labels[i, sl] = e.labels
        labels[i, sl.start] = IGNORE  # nothing predicts the first token
        attention_mask[i, sl] = 1
        position_ids[i, sl] = torch.arange(n)
    batch = {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask,
             "position_ids": position_ids, **_media([[e] for e in encoded])}
    batch["padding_fraction"] = 1.0 - sum(lengths) / (B * L)
    _add_weights(batch, spans, weighting)
    batch["meta"] = [e.meta for e in encoded]
    return batch


def pack_rows(lengths: list[int], max_len: int) -> list[list[int]]:
    """Assign samples (by length) to rows of at most ``max_len`` tokens, first fit in order.

    Returns:
        lists of sample indices, one list per row, samples in their original order.

    Raises:
        ValueError: a sample is longer than ``max_len``.
    """
    rows: list[list[int]] = []
    free: list[int] = []
    for i, n in enumerate(lengths):
        if n > max_len:
            raise ValueError(f"sample {i} has {n} tokens, more than the packing length {max_len}")
        for r, space in enumerate(free):
            if n <= space:
                rows[r].append(i)
                free[r] -= n
                break
        else:
            rows.append([i])
            free.append(max_len - n)
    return rows


def collate_packed(encoded: list, pad_id: int, max_len: int, weighting: Weighting = "token") -> dict[str, Any]:
    """Pack samples into rows of ``max_len`` tokens with per-sample positions and sequence ids;
    ``weighting`` as in :func:`collate`."""
    rows = [[encoded[i] for i in row] for row in pack_rows([len(e) for e in encoded], max_len)]
    B, L = len(rows), max(sum(len(e) for e in row) for row in rows)
    input_ids = torch.full((B, L), pad_id, dtype=torch.long)
    labels = torch.full((B, L), IGNORE, dtype=torch.long)
    position_ids = torch.zeros(B, L, dtype=torch.long)
    sequence_ids = torch.full((B, L), -1, dtype=torch.long)
    attention_mask = torch.zeros(B, L, dtype=torch.long)
    seq = 0
    spans = []
    for r, row in enumerate(rows):
        start = 0
        for e in row:
            n = len(e)
            spans.append((r, slice(start, start + n)))
            input_ids[r, start : start + n] = e.input_ids
            labels[r, start : start + n] = e.labels
            labels[r, start] = IGNORE  # the previous sample's last token must not predict this one
            position_ids[r, start : start + n] = torch.arange(n)
            sequence_ids[r, start : start + n] = seq
            attention_mask[r, start : start + n] = 1
            seq += 1
            start += n
    batch = {"input_ids": input_ids, "labels": labels, "position_ids": position_ids,
             "sequence_ids": sequence_ids, "attention_mask": attention_mask, **_media(rows)}
    real = int(attention_mask.sum())
    batch["padding_fraction"] = 1.0 - real / (B * L)
    _add_weights(batch, spans, weighting)
    batch["meta"] = [e.meta for row in rows for e in row]
    return batch


def block_causal_mask(sequence_ids: torch.Tensor, boolean: bool = True,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, L) sequence ids -> (B, 1, L, L) causal mask that never crosses samples.

    ``boolean`` gives True where attention is allowed (SDPA's format); otherwise an additive
    mask of 0 and the dtype's minimum (eager attention). Padding (-1) attends causally to
    padding only, so no row is empty.
    """
    L = sequence_ids.shape[1]
    same = sequence_ids[:, :, None] == sequence_ids[:, None, :]  # (B, L, L)
    causal = torch.ones(L, L, dtype=torch.bool, device=sequence_ids.device).tril()
    allowed = (same & causal)[:, None]  # (B, 1, L, L)
    if boolean:
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=sequence_ids.device).masked_fill(
        ~allowed, torch.finfo(dtype).min
    )


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """``batch`` with its tensors, and its ``media`` / ``features`` pairs, on ``device``."""
    out = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    for key in ("media", "features"):
        if key in batch:
            out[key] = {m: (v.to(device, non_blocking=True), n.to(device, non_blocking=True))
                        for m, (v, n) in batch[key].items()}
    return out
