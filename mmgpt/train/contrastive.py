"""Stage 0b: contrastive encoder pretraining (CLIP-style image-text, CLAP-style audio-text).

Why the decoder as the text tower: with no pretrained weights anywhere, stage 0a has just
trained the decoder on the captions' language. Its last hidden state at the caption's final
token (which has read the caption in order) is a text embedding that already separates
"a red circle at the top left and a blue square ..." from the same words in another order; keeping it frozen and training the encoders (plus small projections) to meet it
gives encoders whose features describe what the decoder will later be asked to say, and
costs no extra text tower. Shapes: I pairs, D encoder width, H decoder width, E = ``dim``.

    image -> encoder -> all patches flattened (I, P*D) -> Linear -> (I, E) -> L2 norm --+
    clip  -> encoder -> mean over frames (I, D)      -> Linear -> (I, E) -> L2 norm --+
    caption -> decoder (frozen) -> last token (I, H) -> MLP    -> (I, E) -> L2 norm --+-> scaled cosine logits

The loss is symmetric InfoNCE with every pair of identical captions counted as a positive
(captions repeat in a generated world; treating them as negatives would be wrong).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmgpt.datasets.media import load_audio, load_image
from mmgpt.datasets.schema import Sample
from mmgpt.errors import DataError
from mmgpt.tokenizer import EOS
from mmgpt.train.config import ContrastiveConfig


@dataclass
class Pair:
    modality: str
    media: torch.Tensor  # (3, H, W) pixels or (S,) waveform
    caption_ids: list[int]
    caption: str


def caption_pair(sample: Sample) -> tuple[str, object, str]:
    """(modality, media reference, caption) of a caption sample: one media item and a text answer.

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
    return media[0].type, media[0].media, caption


class ContrastiveHeads(nn.Module):
    """Projections into the shared space and the learned temperature.

    Images have a fixed number of patches, so their head reads all of them flattened
    (N*D -> E): which patch holds which colour survives, unlike a mean over patches. Clips vary
    in length and are mean-pooled. ``media_dims`` maps modality -> (tokens or None, width).
    """

    def __init__(self, media_dims: dict[str, tuple[int | None, int]], text_dim: int, cfg: ContrastiveConfig) -> None:
        super().__init__()
        self.media = nn.ModuleDict({m: nn.Linear((n or 1) * d, cfg.dim) for m, (n, d) in media_dims.items()})
        self.text = nn.Sequential(nn.Linear(text_dim, text_dim), nn.GELU(), nn.Linear(text_dim, cfg.dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.temperature)),
                                        requires_grad=cfg.learn_temperature)


class ContrastiveData:
    """Caption samples turned into (media tensor, caption ids) pairs on access."""

    def __init__(self, samples: list[Sample], processor) -> None:
        self.refs = [caption_pair(s) for s in samples]
        self.processor = processor

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> Pair:
        modality, ref, caption = self.refs[i]
        if modality == "image":
            media = self.processor.image_transform(load_image(ref, max_pixels=self.processor.max_image_pixels))
        else:
            media = torch.from_numpy(load_audio(ref, max_seconds=self.processor.max_audio_seconds))
        ids = [*self.processor.encode_text(caption), self.processor.ids[EOS]]
        return Pair(modality, media, ids, caption)


def collate_pairs(pairs: list[Pair], pad_id: int) -> dict:
    L = max(len(p.caption_ids) for p in pairs)
    ids = torch.full((len(pairs), L), pad_id, dtype=torch.long)
    mask = torch.zeros(len(pairs), L, dtype=torch.long)
    for i, p in enumerate(pairs):
        ids[i, : len(p.caption_ids)] = torch.tensor(p.caption_ids)
        mask[i, : len(p.caption_ids)] = 1
    out = {"caption_ids": ids, "caption_mask": mask, "captions": [p.caption for p in pairs],
           "modality": [p.modality for p in pairs], "num_targets": len(pairs), "target_weight": float(len(pairs))}
    images = [p.media for p in pairs if p.modality == "image"]
    audios = [p.media for p in pairs if p.modality == "audio"]
    out["pixel_values"] = torch.stack(images) if images else None
    out["audio_values"] = out["audio_lengths"] = None
    if audios:
        lengths = torch.tensor([a.numel() for a in audios])
        values = torch.zeros(len(audios), int(lengths.max()))
        for i, a in enumerate(audios):
            values[i, : a.numel()] = a
        out["audio_values"], out["audio_lengths"] = values, lengths
    return out


def _pool(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Mean over valid tokens: (I, L, D) -> (I, D)."""
    if lengths is None:
        return x.mean(dim=1)
    valid = (torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]).to(x.dtype)  # (I, L)
    return (x * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)


def contrastive_loss(model, heads: ContrastiveHeads, batch: dict) -> tuple[torch.Tensor, int, dict]:
    """Summed symmetric InfoNCE over the batch's image-text and audio-text pairs.

    Returns:
        (loss summed over pairs, number of pairs, {"retrieval_acc": top-1 media->text accuracy}).
    """
    dec = model.decoder
    mask = batch["caption_mask"]
    with torch.no_grad() if not any(p.requires_grad for p in dec.parameters()) else torch.enable_grad():
        hidden = dec(input_ids=batch["caption_ids"], attention_mask=mask, output_hidden_states=True,
                     use_cache=False).hidden_states[-1]  # (I, L, H)
    # The final <|endoftext|> has read the whole caption in order (a mean would be a bag of words).
    last = mask.sum(1) - 1  # (I,)
    text = hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()  # (I, H)
    total, count, correct = 0.0, 0, 0
    kinds = batch["modality"]
    for modality in ("image", "audio"):
        sel = [i for i, k in enumerate(kinds) if k == modality]
        if len(sel) < 2:
            continue
        if modality == "image":
            feats = model.encoders["image"](batch["pixel_values"])  # (I, P, D)
            pooled = feats.float().flatten(1)  # (I, P*D): keeps where each feature is
        else:
            feats, lengths = model.encoders["audio"](batch["audio_values"], batch["audio_lengths"])  # (I, T, D)
            pooled = _pool(feats.float(), lengths)  # (I, D)
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
        raise DataError("a contrastive batch needs at least two images or two clips")
    return total, count, {"retrieval_acc": correct / count}
