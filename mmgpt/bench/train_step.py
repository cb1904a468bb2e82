"""Train step, mmgpt vs transformers' Llava at equal size: forward + backward + AdamW step.

Shapes: B rows, T tokens per row (``<|image_start|> N x <|image_pad|> <|image_end|>`` + text),
N image tokens, V vocabulary.

Both sides read the same batch of pre-expanded ids and the same pixels, in fp32 or under bf16
autocast, and use their toolkit's own optimiser: mmgpt's ``build_optimizer`` (the trainer's),
and for Llava ``torch.optim.AdamW(fused=True)``, which is what transformers' ``Trainer`` picks
by default on torch >= 2.8 (``adamw_torch_fused``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from mmgpt.bench.peers import ab_batch, build_pair, num_params
from mmgpt.bench.timing import Settings, SideFactory

SIZES = {False: {"preset": "small", "rows": 8, "length": 192}, True: {"preset": "tiny", "rows": 2, "length": 48}}


def autocast(device: torch.device, precision: str):
    """bf16 autocast on ``device`` for ``precision == "bf16"``, else nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _mmgpt_step(model, batch, device, precision):
    from mmgpt.train.config import OptimConfig
    from mmgpt.train.optim import build_optimizer

    opt = build_optimizer(model, OptimConfig(lr=1e-4, warmup_steps=0))

    def step() -> dict[str, float]:
        with autocast(device, precision):
            out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels,
                        media=batch.media())
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return {"loss": float(out.loss.detach())}

    return step


def _llava_step(model, batch, device, precision):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), fused=True)

    def step() -> dict[str, float]:
        with autocast(device, precision):
            out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels,
                        pixel_values=batch.pixel_values)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return {"loss": float(out.loss.detach())}

    return step


def sides(settings: Settings, precision: str, compile: bool = False) -> dict[str, SideFactory]:
    """``mmgpt`` and ``llava`` train-step factories at the sizes of ``settings`` (small / tiny);
    with ``compile`` mmgpt's decoder is compiled as ``compile: true`` compiles it (the warm-up
    runs pay the compile) and Llava stays eager."""
    size = SIZES[settings.quick]
    device = settings.torch_device

    def make(side: str):
        def factory():
            mm, llava = build_pair(size["preset"], settings.seed, side=side)
            model = mm if side == "mmgpt" else llava
            batch = _batch(size, settings).to(device)
            model.to(device).train()
            if compile and side == "mmgpt":
                from mmgpt.train.compile import compile_module

                compile_module(mm.decoder)
            step = (_mmgpt_step if side == "mmgpt" else _llava_step)(model, batch, device, precision)
            info: dict[str, Any] = {
                "params": num_params(model), "tokens_per_step": batch.tokens, "rows": batch.input_ids.shape[0],
                "length": batch.input_ids.shape[1], "image_tokens": batch.image_tokens,
                "preset": size["preset"], "precision": precision, "compiled": compile and side == "mmgpt",
            }
            return step, info

        return factory

    return {"mmgpt": make("mmgpt"), "llava": make("llava")}


def _batch(size: dict, settings: Settings):
    """The shared batch, from the preset's config and tokenizer, so each side alone builds the same one."""
    from mmgpt.bench.peers import AB_OVERRIDES, load_preset, padded_tokenizer

    cfg = load_preset(size["preset"], AB_OVERRIDES)
    tok = padded_tokenizer(cfg.tokenizer.vocab_size)
    return ab_batch(cfg, tok, size["rows"], size["length"], seed=settings.seed)
