"""The stage's starting model: a previous stage's checkpoint, or a fresh one from a preset."""

from __future__ import annotations

import torch

from mmgpt.config import MMGPTConfig, deep_merge, from_dict, read_yaml
from mmgpt.datasets.schema import Sample
from mmgpt.model import MMGPT
from mmgpt.tokenizer import load_tokenizer, train_bpe, with_prefix_space
from mmgpt.train import distributed
from mmgpt.train.config import TrainConfig
from mmgpt.train.lora import apply_lora


def bpe_corpus(samples: list[Sample], prefix_space: bool) -> list[str]:
    """The text a tokenizer is trained on: each sample's text parts, one per line, written as
    the processor will encode them (with the prefix space when it is on)."""
    def part(text: str) -> str:
        return with_prefix_space(text) if prefix_space else text

    return ["\n".join(part(seg.text) for _, seg in s.segments if seg.type == "text") for s in samples]


def build_model(cfg: TrainConfig, samples: list[Sample], dist: distributed.Dist) -> MMGPT:
    """``cfg.init_from``'s model, or a fresh one from the ``cfg.model`` preset (with a byte-level
    BPE trained on ``samples`` first when ``train_tokenizer`` is set; rank 0 trains it, every
    process loads it)."""
    if cfg.init_from:
        return MMGPT.from_pretrained(cfg.init_from)
    mcfg = from_dict(MMGPTConfig, deep_merge(read_yaml(cfg.model, "preset"), cfg.model_args))
    tokenizer = None
    if cfg.train_tokenizer and mcfg.tokenizer.path is None:
        tok_dir = cfg.run_dir / "tokenizer"
        if dist.is_main:
            corpus = bpe_corpus(samples, mcfg.tokenizer.resolved_prefix_space())
            train_bpe(corpus, mcfg.tokenizer.vocab_size).save_pretrained(str(tok_dir))
        distributed.barrier(dist)
        tokenizer = load_tokenizer(tok_dir)
    torch.manual_seed(cfg.seed)
    return MMGPT(mcfg, tokenizer)


def prepare_model(cfg: TrainConfig, samples: list[Sample], dist: distributed.Dist, device: torch.device) -> MMGPT:
    """The stage's model (:func:`build_model`) with its trainable parts set, LoRA applied when asked,
    gradient checkpointing when asked, on ``device`` in training mode."""
    model = build_model(cfg, samples, dist)
    model.set_trainable(cfg.trainable_parts())
    if cfg.lora.enabled:
        torch.manual_seed(cfg.seed)  # LoRA's A matrices are drawn here: the same run, the same draw
        apply_lora(model, cfg.lora)
    if cfg.grad_checkpointing:
        model.decoder.gradient_checkpointing_enable()
    return model.to(device).train()


def trainable_table(model: MMGPT, lrs: dict[str, float]) -> str:
    """Parameters, trainable parameters and learning rate per part, as a printed table."""
    rows = ["part              parameters   trainable   lr"]
    for name, part in model.parts().items():
        total = sum(p.numel() for p in part.parameters())
        train = sum(p.numel() for p in part.parameters() if p.requires_grad)
        lr = f"{lrs.get(name, 0):.1e}" if train else "-"
        rows.append(f"{name:<16} {total:>11,} {train:>11,}   {lr}")
    return "\n".join(rows)
