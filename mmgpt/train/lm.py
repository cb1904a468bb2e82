"""The next-token objective: text LM, alignment, interleaved and instruction stages.

Items are processed samples (:class:`mmgpt.processor.Encoded`), built on access with the
frozen-feature caches consulted before any media is decoded; batches are packed or padded
(:mod:`mmgpt.batching`); the loss is the model's own (summed cross-entropy over target tokens,
optionally weighted per sample), so accumulation and DDP normalise by the global batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmgpt.batching import collate, collate_packed, to_device
from mmgpt.datasets.schema import Sample
from mmgpt.feature_cache import FeatureCache, encoder_fingerprint
from mmgpt.modalities import MODALITIES
from mmgpt.precision import autocast
from mmgpt.processor import Encoded, Processor
from mmgpt.train.objective import Objective, StepLoss

MODEL_KEYS = ("input_ids", "attention_mask", "position_ids", "labels", "loss_weights", "sequence_ids", "media",
              "features")


class EncodedDataset:
    """Samples processed on access (media decoded unless cached, tokens built); a bad sample
    names itself."""

    def __init__(self, samples: list[Sample], processor: Processor, caches: dict[str, FeatureCache]) -> None:
        self.samples = samples
        self.processor = processor
        self.caches = caches

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Encoded:
        return self.item(self.samples[i])

    def item(self, sample: Sample) -> Encoded:
        """One sample processed (streamed data are processed sample by sample)."""
        return self.processor(sample, cache=self.caches)

    def estimate_length(self, i: int) -> int:
        """Cheap token count (text + media, media measured from file headers) for length grouping."""
        proc = self.processor
        n = 8 * len(self.samples[i].turns)
        for _, seg in self.samples[i].segments:
            if seg.type == "text":
                n += len(proc.encode_text(seg.text))
            else:
                length = MODALITIES[seg.type].measure(seg.media, proc.encoders[seg.type])
                n += proc.num_media_tokens(seg.type, length) + 2
        return n

    def modality_key(self, i: int) -> int:
        """Which modalities the sample holds, as bits in registry order (batches group by it)."""
        kinds = {seg.type for seg in self.samples[i].media()}
        return sum(1 << k for k, name in enumerate(MODALITIES) if name in kinds)


def make_batch(items: list[Encoded], pad_id: int, batching: str, max_len: int, weighting: str = "token") -> dict:
    """Collate processed samples: packed rows of ``max_len`` tokens, or one sample per row;
    ``weighting`` is the loss weighting of target tokens (:func:`mmgpt.batching.collate`)."""
    if batching == "pack":
        return collate_packed(items, pad_id, max_len, weighting=weighting)
    return collate(items, pad_id, padding_side="right", weighting=weighting)


class LMObjective(Objective):
    """Next-token loss on processed samples, with frozen encoders' features cached.

    Args:
        cfg: the :class:`~mmgpt.train.config.TrainConfig`.
        model: the MMGPT (trainable flags set, on ``device``).
        device: where it runs. amp: the autocast dtype, None for fp32.
        main: this process writes the cache shards and runs the periodic evaluation.
        start_step: the step the run starts at (a resumed run ignores cache shards written after it).
    """

    def __init__(self, cfg, model, device: torch.device, amp: torch.dtype | None, main: bool,
                 start_step: int) -> None:
        self.cfg, self.model, self.device, self.amp = cfg, model, device, amp
        self.module = model
        self.max_len = cfg.data.max_len or model.config.max_length
        self.start_step = start_step
        self.caches = self._open_caches(main) if cfg.feature_cache else {}
        self.periodic = None
        if cfg.eval.data and main:
            from mmgpt.eval.hook import PeriodicEval

            self.periodic = PeriodicEval(cfg.eval.data, every=cfg.eval.every, limit=cfg.eval.limit,
                                         tasks=cfg.eval.tasks, batch_size=cfg.eval.batch_size, seed=cfg.seed)

    def _open_caches(self, main: bool) -> dict[str, FeatureCache]:
        """A cache per frozen encoder (on disk under ``<out_dir>/.feature_cache`` on the main process)."""
        caches = {}
        for m, enc in self.model.encoders.items():
            if any(p.requires_grad for p in enc.parameters()):
                continue
            root = Path(self.cfg.out_dir) / ".feature_cache" if main else None
            caches[m] = FeatureCache(root, encoder_fingerprint(enc, extra=str(self.amp)), m, skip=self._later_shard)
        return caches

    def _later_shard(self, name: str) -> bool:
        """Shards this run wrote after the step it resumes from (features are batch-dependent in
        the last bits, so exact resume needs exactly the cache the checkpoint saw)."""
        prefix = f"{self.cfg.name}-step"
        return name.startswith(prefix) and int(name[len(prefix):] or 0) > self.start_step

    def dataset(self, samples: list[Sample]) -> EncodedDataset:
        return EncodedDataset(samples, self.model.processor, self.caches)

    def group_keys(self, data: Sequence[Any]) -> tuple[list[int], list[int]] | None:
        if self.cfg.data.batching != "group":
            return None
        return [data.estimate_length(i) for i in range(len(data))], [data.modality_key(i) for i in range(len(data))]

    def collate(self, items: list[Encoded], validation: bool = False) -> dict[str, Any]:
        weighting = "token" if validation else self.cfg.data.loss_weighting
        return make_batch(items, self.model.pad_token_id, self.cfg.data.batching, self.max_len, weighting)

    def _features(self, batch: dict[str, Any]) -> None:
        """Turn the batch's cached-media items into ``features`` (encoding the misses once)."""
        features = {}
        for m, items in batch.pop("cached_media", {}).items():
            encoder = self.model.encoders[m]

            def encode(values, lengths, encoder=encoder):
                with torch.no_grad(), autocast(self.device, self.amp):
                    return encoder(values, lengths)

            features[m] = self.caches[m].features_for(items, encode, self.device)
        if features:
            batch["features"] = features

    def loss(self, batch: dict[str, Any], module: nn.Module) -> StepLoss:
        self._features(batch)
        inputs = to_device({k: batch[k] for k in MODEL_KEYS if k in batch}, self.device)
        out = module(**inputs)
        return StepLoss(out.loss_sum, out.target_weight)

    def tokens(self, batch: dict[str, Any]) -> int:
        return int(batch["attention_mask"].sum())

    def flush(self, step: int) -> None:
        for cache in self.caches.values():
            cache.flush(f"{self.cfg.name}-step{step:08d}")

    def evaluate(self, model: nn.Module, step: int, final: bool) -> dict[str, float] | None:
        if self.periodic is None or not (final or self.periodic.due(step)):
            return None
        with autocast(self.device, self.amp):
            return self.periodic(model)

    def summary(self) -> dict[str, Any]:
        return {"feature_cache": {m: {"hits": c.hits, "misses": c.misses} for m, c in self.caches.items()}}
