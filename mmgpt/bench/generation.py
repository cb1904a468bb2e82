"""Generation, mmgpt vs transformers' Llava: prefill latency and decode tokens/s through ``generate``.

Shapes: B prompts (1 or 8), each one image (N tokens) and a short question; 64 new tokens each.

Greedy with ``min_new_tokens = max_new_tokens = 64``, so every row produces exactly 64 tokens
whatever the random weights predict. mmgpt is called the way a user calls it:
``model.generate(messages)`` with a PIL image, so its time includes the processor (image
transform, tokenising) and the vision tower. Llava gets the ids and pixels that mmgpt's
processor produced (no Llava processor is involved), so its time covers its vision tower and
decoder only. A streamer records when each token comes out:

    prefill latency = first token - call;   decode tokens/s = B * 63 / (last token - first token)
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.generation.streamers import BaseStreamer

from mmgpt.batching import collate
from mmgpt.bench.peers import build_pair, num_params
from mmgpt.bench.timing import Settings, SideFactory

NEW_TOKENS = 64
SIZES = {False: {"preset": "small"}, True: {"preset": "tiny"}}
QUESTION = "What shapes are in the picture, and what colour is each of them?"


class TokenClock(BaseStreamer):
    """Records ``time.perf_counter()`` at each ``put``: first the prompt, then every new token."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def prompts(batch: int, size: int, seed: int = 0) -> list[list[dict]]:
    """``batch`` chats of one random image and the same question (equal lengths, no padding)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(batch):
        img = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        out.append([{"role": "user", "content": [{"type": "image", "image": img}, {"type": "text", "text": QUESTION}]}])
    return out


def _times(clock: TokenClock, t0: float, rows: int) -> dict[str, float]:
    first, last = clock.times[1], clock.times[-1]
    new = len(clock.times) - 1
    return {"prefill_s": first - t0, "decode_tokens_per_s": rows * (new - 1) / max(last - first, 1e-9),
            "new_tokens": float(new), "tokens_per_s": rows * new / max(last - t0, 1e-9)}


def sides(settings: Settings, batch: int, compile: bool = False) -> dict[str, SideFactory]:
    """``mmgpt`` and ``llava`` generate factories for ``batch`` prompts; with ``compile`` mmgpt
    decodes with ``generate(compile=True)`` (static KV cache, compiled step; the warm-up runs pay
    the compile) and Llava stays eager."""
    preset = SIZES[settings.quick]["preset"]
    device = settings.torch_device
    new_tokens = 16 if settings.quick else NEW_TOKENS

    def make(side: str):
        def factory():
            mm, llava = build_pair(preset, settings.seed, side=side)  # mmgpt's processor feeds both
            chats = prompts(batch, mm.config.vision.img_size, settings.seed)
            info: dict[str, Any] = {"batch": batch, "new_tokens": new_tokens, "preset": preset,
                                    "compiled": compile and side == "mmgpt"}
            if side == "mmgpt":
                mm.to(device).eval()
                info["params"] = num_params(mm)
                info["prompt_tokens"] = len(mm.processor(chats[0], add_generation_prompt=True))

                def step() -> dict[str, float]:
                    clock = TokenClock()
                    t0 = time.perf_counter()
                    mm.generate(chats, max_new_tokens=new_tokens, min_new_tokens=new_tokens, streamer=clock,
                                compile=compile)
                    return _times(clock, t0, batch)

                return step, info
            llava.to(device).eval()
            info["params"] = num_params(llava)
            enc = collate([mm.processor(c, add_generation_prompt=True) for c in chats], mm.pad_token_id, "left")
            ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
            pixels = enc["media"]["image"][0].to(device)
            info["prompt_tokens"] = int(ids.shape[1])

            @torch.no_grad()
            def step_llava() -> dict[str, float]:
                clock = TokenClock()
                t0 = time.perf_counter()
                llava.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=new_tokens,
                               min_new_tokens=new_tokens, do_sample=False, use_cache=True, streamer=clock)
                return _times(clock, t0, batch)

            return step_llava, info

        return factory

    return {"mmgpt": make("mmgpt"), "llava": make("llava")}
