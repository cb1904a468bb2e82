"""MFU: model FLOPs per second of a ``small``-preset train step over the peak matmul rate measured here.

Shapes: B rows of T tokens, each row one image (N_img tokens after pixel shuffle) and one clip
(N_aud tokens after frame stacking) then text; n the side of the square matmuls.

- Peak: best of k ``torch.mm`` of two n x n matrices, n = 2048 and 4096, in fp32 and bf16
  (2 n³ FLOPs each), in this process, right before the train steps.
- Model FLOPs of a step: 3 x the forward FLOPs (backward = 2 x forward), counted once with
  ``torch.utils.flop_counter.FlopCounterMode`` on a forward pass of the full model, called as
  the trainer calls it: every matmul and convolution of the encoders, adapters and decoder
  (the LM head where the step computes logits: all positions, or the target positions only) and
  attention (the CPU flash-attention kernel, which the counter does not know, is counted with
  its ``sdpa`` formula: the full T x T square, as FlopCounter and PaLM count it). Nothing is
  counted twice and no recomputation is counted. ``6 N T`` (N: parameters without the input
  embedding, T: decoder tokens) is reported next to it, the count the issue's Llava numbers use.
- Step: forward + backward + AdamW (mmgpt's optimiser), every part trainable, fp32 and bf16
  autocast, alternating.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from mmgpt.batching import to_device
from mmgpt.bench.peers import build_mmgpt, num_params
from mmgpt.bench.timing import Settings, SideFactory, sync
from mmgpt.bench.train_step import autocast

SIZES = {False: {"preset": "small", "rows": 8, "length": 192, "clip_s": 2.0, "n": (2048, 4096), "best_of": 5},
         True: {"preset": "tiny", "rows": 2, "length": 64, "clip_s": 0.5, "n": (256, 512), "best_of": 2}}


def peak_matmul(device: torch.device, sizes: tuple[int, ...], best_of: int) -> dict[str, dict[str, float]]:
    """Best-of-``best_of`` FLOP/s of ``torch.mm`` per dtype and size, and the best over sizes."""
    out: dict[str, dict[str, float]] = {}
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        rates = {}
        for n in sizes:
            a = torch.randn(n, n, device=device).to(dtype)
            b = torch.randn(n, n, device=device).to(dtype)
            torch.mm(a, b)  # warm-up
            best = float("inf")
            for _ in range(best_of):
                sync(device)
                t0 = time.perf_counter()
                torch.mm(a, b)
                sync(device)
                best = min(best, time.perf_counter() - t0)
            rates[str(n)] = 2 * n**3 / best
        out[name] = {**rates, "peak": max(rates.values())}
    return out


def mfu_batch(model, rows: int, length: int, clip_s: float, seed: int = 0) -> dict[str, Any]:
    """Rows of ``<image span> <audio span> text``, labels on the text; ids and media for ``model``."""
    from mmgpt.tokenizer import MEDIA_TOKENS, special_ids

    g = torch.Generator().manual_seed(seed)
    ids = special_ids(model.tokenizer)
    proc = model.processor
    samples = int(clip_s * 16000)
    n_img, n_aud = proc.num_media_tokens("image"), proc.num_media_tokens("audio", samples)
    spans = []
    for m, n in (("image", n_img), ("audio", n_aud)):
        start, pad, end = (ids[t] for t in MEDIA_TOKENS[m])
        spans.append(torch.tensor([start] + [pad] * n + [end]))
    media = torch.cat(spans)
    if length <= media.numel() + 1:
        raise ValueError(f"bench: rows of {length} tokens cannot hold {media.numel()} media tokens")
    low = max(ids.values()) + 1
    text = torch.randint(low, len(model.tokenizer), (rows, length - media.numel()), generator=g)
    input_ids = torch.cat([media.expand(rows, -1), text], dim=1)  # (B, T)
    labels = input_ids.clone()
    labels[:, : media.numel()] = -100
    img = model.config.vision.img_size
    media = {"image": (torch.randn(rows, 3, img, img, generator=g), torch.full((rows,), img, dtype=torch.long)),
             "audio": (0.1 * torch.randn(rows, samples, generator=g), torch.full((rows,), samples, dtype=torch.long))}
    return {"input_ids": input_ids, "labels": labels, "attention_mask": torch.ones_like(input_ids), "media": media,
            "media_tokens": {"image": n_img, "audio": n_aud}}


def forward_flops(model, batch: dict) -> int:
    """FLOPs of one forward pass (matmuls, convolutions, attention), counted by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    aten = torch.ops.aten

    def cpu_flash(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    mapping = {aten._scaled_dot_product_flash_attention_for_cpu: cpu_flash}
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with torch.no_grad(), counter:
        model(**{k: v for k, v in batch.items() if k != "media_tokens"})
    return int(counter.get_total_flops())


def sides(settings: Settings) -> dict[str, SideFactory]:
    """``fp32`` and ``bf16`` train-step factories of the preset; the model is built once and shared."""
    size = SIZES[settings.quick]
    device = settings.torch_device
    shared: dict[str, Any] = {}

    def model_and_batch():
        if not shared:
            model = build_mmgpt(size["preset"], seed=settings.seed)
            batch = mfu_batch(model, size["rows"], size["length"], size["clip_s"], settings.seed)
            flops = forward_flops(model, batch)
            model.to(device).train()
            n_embed = model.decoder.get_input_embeddings().weight.numel()
            tokens = int(batch["attention_mask"].sum())
            shared.update(model=model, batch=to_device(batch, device),
                          info={"preset": size["preset"], "params": num_params(model), "rows": size["rows"],
                                "length": size["length"], "tokens_per_step": tokens,
                                "media_tokens_per_row": batch["media_tokens"], "clip_seconds": size["clip_s"],
                                "model_flops_per_step": 3 * flops,
                                "six_n_t_flops_per_step": 6 * (num_params(model) - n_embed) * tokens})
        return shared["model"], shared["batch"], shared["info"]

    def make(precision: str):
        def factory():
            from mmgpt.train.config import OptimConfig
            from mmgpt.train.optim import build_optimizer

            model, batch, info = model_and_batch()
            opt = build_optimizer(model, OptimConfig(lr=1e-4, warmup_steps=0))
            inputs = {k: v for k, v in batch.items() if k != "media_tokens"}

            def step() -> dict[str, float]:
                with autocast(device, precision):
                    out = model(**inputs)
                out.loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                return {"loss": float(out.loss.detach())}

            return step, {**info, "precision": precision}

        return factory

    return {"fp32": make("fp32"), "bf16": make("bf16")}


def peaks(settings: Settings) -> dict[str, Any]:
    """The peak matmul rates at the sizes of ``settings``."""
    size = SIZES[settings.quick]
    return peak_matmul(settings.torch_device, size["n"], size["best_of"])


def auto_choice(settings: Settings) -> dict[str, Any]:
    """What ``precision: auto`` picks for the preset's train step: its probe rates, measured afresh."""
    from mmgpt.precision import choose, measure

    size = SIZES[settings.quick]
    cfg = build_mmgpt(size["preset"], seed=settings.seed).decoder.config
    rates = measure(settings.torch_device, cfg.hidden_size, cfg.intermediate_size, size["rows"] * size["length"],
                    use_cache=False)
    return {"chosen": choose(rates), "probe_flops": rates, "preset": size["preset"]}
