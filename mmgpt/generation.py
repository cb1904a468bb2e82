"""Generation: batched prompts through transformers ``generate`` on ``inputs_embeds``.

Prompts are left-padded and embedded once (media encoded at prefill only); the decoder's
``generate`` then runs with its KV cache, greedy, sampling or beam search. ``chat(...,
stream=True)`` yields text pieces as they are produced (``TextIteratorStreamer``).
"""

from __future__ import annotations

from collections.abc import Iterator
from threading import Thread
from typing import Any

import torch
from transformers import TextIteratorStreamer

from mmgpt.batching import collate
from mmgpt.datasets.schema import Sample
from mmgpt.errors import ContextOverflowError
from mmgpt.processor import CAPTION_PROMPTS

Prompt = Sample | list[dict]


def _as_prompt(p: Any) -> Prompt:
    if isinstance(p, (Sample, list)):
        return p
    raise TypeError(f"a prompt is a Sample or a list of chat messages, got {type(p).__name__}")


def prepare(model, prompts: list[Prompt], max_new_tokens: int) -> dict:
    """Encode prompts (with the assistant header) and left-pad them into one batch on the model's device.

    Raises:
        ContextOverflowError: ``max_new_tokens`` leaves no room for the prompt.
    """
    budget = model.config.max_length - max_new_tokens
    if budget < 1:
        raise ContextOverflowError(
            f"max_new_tokens={max_new_tokens} does not fit the context of {model.config.max_length} tokens"
        )
    enc = [model.processor(_as_prompt(p), add_generation_prompt=True, max_length=budget) for p in prompts]
    batch = collate(enc, model.pad_token_id, padding_side="left")
    dev = model.device
    return {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _generate_kwargs(model, max_new_tokens: int, do_sample: bool, temperature: float, top_p: float,
                     top_k: int | None, num_beams: int, min_new_tokens: int | None, use_cache: bool,
                     repetition_penalty: float | None) -> dict:
    kw = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, num_beams=num_beams, use_cache=use_cache,
              eos_token_id=model.stop_token_ids, pad_token_id=model.pad_token_id)
    if do_sample:
        kw.update(temperature=temperature, top_p=top_p)
        if top_k is not None:
            kw["top_k"] = top_k
    if min_new_tokens:
        kw["min_new_tokens"] = min_new_tokens
    if repetition_penalty:
        kw["repetition_penalty"] = repetition_penalty
    return kw


@torch.no_grad()
def generate(model, prompts: list[Prompt] | Prompt, *, max_new_tokens: int = 64, do_sample: bool = False,
             temperature: float = 1.0, top_p: float = 1.0, top_k: int | None = None, num_beams: int = 1,
             min_new_tokens: int | None = None, use_cache: bool = True, repetition_penalty: float | None = None,
             seed: int | None = None, streamer=None, return_ids: bool = False) -> list[str] | list[list[int]]:
    """Generate a continuation for each prompt.

    Args:
        model: an :class:`mmgpt.model.MMGPT`.
        prompts: chat messages (transformers content-list format) or Samples; one or a list.
        max_new_tokens / min_new_tokens: generation length bounds.
        do_sample, temperature, top_p, top_k: sampling (greedy when ``do_sample`` is False).
        num_beams: beam search width.
        use_cache: KV cache (on by default; off gives the same greedy output, slower).
        seed: seed for sampling, for repeatable outputs.
        streamer: a transformers streamer (batch of one).
        return_ids: return token id lists instead of text.

    Returns:
        one string (or id list) per prompt, special tokens removed.
    """
    if isinstance(prompts, Sample) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], dict)):
        prompts = [prompts]
    was_training = model.training
    model.eval()
    try:
        batch = prepare(model, list(prompts), max_new_tokens)
        embeds = model.embed(batch)
        if seed is not None:
            torch.manual_seed(seed)
        kw = _generate_kwargs(model, max_new_tokens, do_sample, temperature, top_p, top_k, num_beams,
                              min_new_tokens, use_cache, repetition_penalty)
        out = model.decoder.generate(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                                     streamer=streamer, **kw)  # (B, new tokens)
    finally:
        model.train(was_training)
    stops = set(model.stop_token_ids) | {model.pad_token_id}
    ids = []
    for row in out.tolist():
        cut = next((i for i, t in enumerate(row) if t in stops), len(row))
        ids.append(row[:cut])
    if return_ids:
        return ids
    return [model.tokenizer.decode(r, skip_special_tokens=True).strip() for r in ids]


def chat(model, messages: list[dict], stream: bool = False, **kwargs) -> str | Iterator[str]:
    """Answer the last user turn of ``messages``.

    Returns:
        the answer, or with ``stream=True`` an iterator of text pieces as they are generated.
    """
    if not stream:
        return generate(model, [messages], **kwargs)[0]
    streamer = TextIteratorStreamer(model.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            generate(model, [messages], streamer=streamer, **kwargs)
        except BaseException as e:  # surfaced to the caller below
            errors.append(e)
            streamer.end()

    thread = Thread(target=run, daemon=True)
    thread.start()

    def pieces() -> Iterator[str]:
        yield from streamer
        thread.join()
        if errors:
            raise errors[0]

    return pieces()


def caption(model, image=None, audio=None, prompt: str | None = None, **kwargs) -> str:
    """Caption one image or one clip (path, PIL image, numpy array, or ``(waveform, rate)``).

    Raises:
        ValueError: neither or both of ``image`` and ``audio`` given.
    """
    if (image is None) == (audio is None):
        raise ValueError("caption() takes exactly one of image= or audio=")
    kind, media = ("image", image) if image is not None else ("audio", audio)
    content = [{"type": kind, kind: media}, {"type": "text", "text": prompt or CAPTION_PROMPTS[kind]}]
    return chat(model, [{"role": "user", "content": content}], **kwargs)
