"""Stage 0b: contrastive encoder pretraining (CLIP-style image-text, CLAP-style audio-text).

Why the decoder as the text tower: with no pretrained weights anywhere, stage 0a has just
trained the decoder on the captions' language. Its last hidden state at the caption's final
token (which has read the caption in order) is a text embedding that already separates
"a red circle at the top left and a blue square ..." from the same words in another order; keeping it frozen and training the encoders (plus small projections) to meet it
gives encoders whose features describe what the decoder will later be asked to say, and
costs no extra text tower. Shapes: I pairs, D encoder width, H decoder width, E = ``dim``.
Every modality of the model is handled alike, by the shape of its encoder's output::

    fixed-size items (images) -> encoder -> all tokens flattened (I, P*D) -> Linear -> (I, E) -> L2 norm --+
    varying items (clips)     -> encoder -> mean over frames (I, D)      -> Linear -> (I, E) -> L2 norm --+
    caption -> decoder (frozen) -> last token (I, H)                     -> MLP    -> (I, E) -> L2 norm --+
                                                                              -> scaled cosine logits per modality

The loss is symmetric InfoNCE with every pair of identical captions counted as a positive
(captions repeat in a generated world; treating them as negatives would be wrong).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmgpt.batching import pad_stack, to_device
from mmgpt.datasets.schema import Sample, Segment
from mmgpt.errors import DataError
from mmgpt.tokenizer import EOS
from mmgpt.train.config import ContrastiveConfig
from mmgpt.train.objective import Objective, StepLoss


@dataclass
class Pair:
    modality: str
    values: torch.Tensor  # the encoder's input, e.g. (3, H, W) pixels or (S,) waveform
    caption_ids: list[int]
    caption: str


def caption_pair(sample: Sample) -> tuple[Segment, str]:
    """(media segment, caption) of a caption sample: one media item and a text answer.

    Raises:
        DataError: the sample has not exactly one media item or no caption text.
    """
    media = list(sample.media())
    if len(media) != 1:
        raise DataError(f"{sample.source}: contrastive pretraining needs one image or clip per sample, got {len(media)}")
    if sample.is_chat:
        texts = [s.text for t in sample.turns if t.role == "assistant" for s in t.segments if s.type == "text"]
    else:
        texts = [s.text for _, s in sample.segments if s.type == "text"]
    caption = " ".join(t.strip() for t in texts if t.strip())
    if not caption:
        raise DataError(f"{sample.source}: no caption text for contrastive pretraining")
    return media[0], caption


class ContrastiveHeads(nn.Module):
    """Projections into the shared space and the learned temperature.

    Fixed-size items (images) are read whole, all tokens flattened (N*D -> E): which patch holds
    which colour survives, unlike a mean over patches. Items of varying length (clips) are
    mean-pooled. ``media_dims`` maps modality -> (fixed token count or None, width).
    """

    def __init__(self, media_dims: dict[str, tuple[int | None, int]], text_dim: int, cfg: ContrastiveConfig) -> None:
        super().__init__()
        self.media = nn.ModuleDict({m: nn.Linear((n or 1) * d, cfg.dim) for m, (n, d) in media_dims.items()})
        self.text = nn.Sequential(nn.Linear(text_dim, text_dim), nn.GELU(), nn.Linear(text_dim, cfg.dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.temperature)),
                                        requires_grad=cfg.learn_temperature)


class ContrastiveData:
    """Caption samples turned into (media tensor, caption ids) pairs on access."""

    def __init__(self, samples: Sequence[Sample], processor) -> None:
        self.samples = samples
        self.processor = processor

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Pair:
        return self.item(self.samples[i])

    def item(self, sample: Sample) -> Pair:
        """The (media, caption) pair of one sample."""
        seg, caption = caption_pair(sample)
        values = self.processor.load_media(seg, sample.source)
        ids = [*self.processor.encode_text(caption), self.processor.ids[EOS]]
        return Pair(seg.type, values, ids, caption)


def collate_pairs(pairs: list[Pair], pad_id: int) -> dict:
    """Pairs -> caption ids and mask (I, L), the media per modality, and the captions."""
    L = max(len(p.caption_ids) for p in pairs)
    ids = torch.full((len(pairs), L), pad_id, dtype=torch.long)
    mask = torch.zeros(len(pairs), L, dtype=torch.long)
    for i, p in enumerate(pairs):
        ids[i, : len(p.caption_ids)] = torch.tensor(p.caption_ids)
        mask[i, : len(p.caption_ids)] = 1
    kinds = [p.modality for p in pairs]
    media = {m: pad_stack([p.values for p in pairs if p.modality == m]) for m in dict.fromkeys(kinds)}
    return {"caption_ids": ids, "caption_mask": mask, "captions": [p.caption for p in pairs], "modality": kinds,
            "media": media, "num_targets": len(pairs), "target_weight": float(len(pairs))}


def _pool(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Mean over valid tokens: (I, L, D) -> (I, D)."""
    if lengths is None:
        return x.mean(dim=1)
    valid = (torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]).to(x.dtype)  # (I, L)
    return (x * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)


def _caption_embeddings(model, batch: dict) -> torch.Tensor:
    """The decoder's last hidden state at each caption's final token: (I, H)."""
    dec = model.decoder
    mask = batch["caption_mask"]
    with torch.no_grad() if not any(p.requires_grad for p in dec.parameters()) else torch.enable_grad():
        hidden = dec(input_ids=batch["caption_ids"], attention_mask=mask, output_hidden_states=True,
                     use_cache=False).hidden_states[-1]  # (I, L, H)
    # The final <|endoftext|> has read the whole caption in order (a mean would be a bag of words).
    last = mask.sum(1) - 1  # (I,)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()  # (I, H)


def contrastive_loss(model, heads: ContrastiveHeads, batch: dict) -> tuple[torch.Tensor, int, dict]:
    """Summed symmetric InfoNCE over the batch's media-text pairs, per modality.

    Returns:
        (loss summed over pairs, number of pairs, {"retrieval_acc": top-1 media->text accuracy}).
    """
    text = _caption_embeddings(model, batch)
    total, count, correct = 0.0, 0, 0
    kinds = batch["modality"]
    for modality, encoder in model.encoders.items():
        sel = [i for i, k in enumerate(kinds) if k == modality]
        if len(sel) < 2:
            continue
        feats, lengths = encoder(*batch["media"][modality])  # (I, P, D), (I,)
        fixed = encoder.fixed_tokens is not None
        pooled = feats.float().flatten(1) if fixed else _pool(feats.float(), lengths)  # (I, P*D) or (I, D)
        zm = F.normalize(heads.media[modality](pooled), dim=-1)  # (I, E)
        zt = F.normalize(heads.text(text[sel]), dim=-1)  # (I, E)
        logits = heads.logit_scale.exp().clamp(max=100) * zm @ zt.T  # (I, I)
        caps = [batch["captions"][i] for i in sel]
        pos = torch.tensor([[a == b for b in caps] for a in caps], device=logits.device)  # (I, I)
        lm = logits.log_softmax(dim=1).masked_fill(~pos, float("-inf")).logsumexp(dim=1)
        lt = logits.log_softmax(dim=0).masked_fill(~pos, float("-inf")).logsumexp(dim=0)
        total = total - 0.5 * (lm.sum() + lt.sum())
        count += len(sel)
        correct += int(pos[torch.arange(len(sel)), logits.argmax(dim=1)].sum())
    if count == 0:
        raise DataError("a contrastive batch needs at least two items of one modality")
    return total, count, {"retrieval_acc": correct / count}


class ContrastiveModule(nn.Module):
    """Model + heads behind one forward, so DDP sees the contrastive loss's parameters."""

    def __init__(self, model, heads: ContrastiveHeads) -> None:
        super().__init__()
        self.model, self.heads = model, heads

    def forward(self, batch: dict):
        return contrastive_loss(self.model, self.heads, batch)


class ContrastiveObjective(Objective):
    """Stage 0b: the encoders learn to meet the frozen decoder's caption embeddings.

    The heads are added to the model as ``contrastive_heads`` (so they train and checkpoint with
    it) and removed before the final save. It runs under DDP only (its encoders are small).
    """

    HEADS = "contrastive_heads"
    shardable = False
    uses_decoder = False

    def __init__(self, cfg, model, device: torch.device) -> None:
        self.model, self.device = model, device
        hidden = model.decoder.get_input_embeddings().embedding_dim
        dims = {m: (e.fixed_tokens, e.output_dim) for m, e in model.encoders.items()}
        self.heads = ContrastiveHeads(dims, hidden, cfg.contrastive).to(device)
        model.add_module(self.HEADS, self.heads)
        self.module = ContrastiveModule(model, self.heads)

    def dataset(self, samples: list[Sample]) -> ContrastiveData:
        return ContrastiveData(samples, self.model.processor)

    def collate(self, items: list[Pair], validation: bool = False) -> dict:
        return collate_pairs(items, self.model.pad_token_id)

    def loss(self, batch: dict, module: nn.Module) -> StepLoss:
        loss_sum, count, metrics = module(to_device(batch, self.device))
        return StepLoss(loss_sum, count, metrics)

    def tokens(self, batch: dict) -> int:
        return int(batch["caption_mask"].sum())

    def finalize(self, model: nn.Module) -> set[str]:
        if hasattr(model, self.HEADS):
            delattr(model, self.HEADS)
        return {self.HEADS + "."}
