"""Generation: the one path from prompts to text, used by the API, eval, the chat CLI and the demo.

Prompts are encoded, left-padded and embedded once (media encoded at prefill only); the
decoder's ``generate`` then runs with its KV cache, greedy, sampling or beam search. Two prompt
modes: ``chat`` (messages or chat samples, ending with ``<|im_start|>assistant\\n``) and
``completion`` (role-less documents continued as they are, for few-shot completion prompts).
:func:`stream_answer` yields the text of one answer as it is produced (``TextIteratorStreamer``, a
generating thread that can hold a caller's lock).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Literal

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from mmgpt.batching import collate, to_device
from mmgpt.datasets.schema import Sample
from mmgpt.errors import ContextOverflowError
from mmgpt.modalities import CAPTION_PROMPTS

Prompt = Sample | list[dict]
Mode = Literal["chat", "completion"]
MODES = ("chat", "completion")


def _as_prompt(p: Any) -> Prompt:
    if isinstance(p, (Sample, list)):
        return p
    raise TypeError(f"a prompt is a Sample or a list of chat messages, got {type(p).__name__}")


def _encode(model, prompt: Prompt, budget: int, mode: Mode):
    if mode == "chat":
        return model.processor(_as_prompt(prompt), add_generation_prompt=True, max_length=budget)
    enc = model.processor(_as_prompt(prompt), max_length=budget + 1)  # + the <|endoftext|> dropped here
    enc.input_ids, enc.labels = enc.input_ids[:-1], enc.labels[:-1]
    return enc


def prepare(model, prompts: list[Prompt], max_new_tokens: int, mode: Mode = "chat") -> dict:
    """Encode prompts and left-pad them into one batch on the model's device.

    Raises:
        ContextOverflowError: ``max_new_tokens`` leaves no room for the prompt, or a prompt's
            media alone do not fit.
        ValueError: an unknown ``mode``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    budget = model.config.max_length - max_new_tokens
    if budget < 1:
        raise ContextOverflowError(
            f"max_new_tokens={max_new_tokens} does not fit the context of {model.config.max_length} tokens"
        )
    batch = collate([_encode(model, p, budget, mode) for p in prompts], model.pad_token_id, padding_side="left")
    return to_device(batch, model.device)


def compiled_decoding() -> dict:
    """``generate`` arguments of the compiled decode path: a static KV cache (fixed shapes) and
    the decoder's step compiled by transformers (on every device, the CPU included)."""
    from transformers import CompileConfig

    config = CompileConfig(fullgraph=False, dynamic=False)
    config._compile_all_devices = True  # transformers compiles on accelerators only unless told
    return {"cache_implementation": "static", "compile_config": config}


def _generate_kwargs(model, max_new_tokens: int, do_sample: bool, temperature: float, top_p: float,
                     top_k: int | None, num_beams: int, min_new_tokens: int | None, use_cache: bool,
                     repetition_penalty: float | None, compile: bool = False) -> dict:
    kw = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, num_beams=num_beams, use_cache=use_cache,
              eos_token_id=model.stop_token_ids, pad_token_id=model.pad_token_id)
    if compile and use_cache:
        kw.update(compiled_decoding())
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
def generate(model, prompts: list[Prompt] | Prompt, *, mode: Mode = "chat", max_new_tokens: int = 64, do_sample: bool = False,
             temperature: float = 1.0, top_p: float = 1.0, top_k: int | None = None, num_beams: int = 1,
             min_new_tokens: int | None = None, use_cache: bool = True, repetition_penalty: float | None = None,
             seed: int | None = None, streamer=None, return_ids: bool = False,
             stopping_criteria=None, compile: bool = False) -> list[str] | list[list[int]]:
    """Generate a continuation for each prompt.

    Args:
        model: an :class:`mmgpt.model.MMGPT`.
        prompts: chat messages (transformers content-list format) or Samples; one or a list.
        mode: ``chat`` (answer as the assistant) or ``completion`` (continue a document).
        max_new_tokens / min_new_tokens: generation length bounds.
        do_sample, temperature, top_p, top_k: sampling (greedy when ``do_sample`` is False).
        num_beams: beam search width.
        use_cache: KV cache (on by default; off gives the same greedy output, slower).
        seed: seed for sampling, for repeatable outputs.
        streamer: a transformers streamer (batch of one).
        return_ids: return token id lists instead of text.
        compile: decode with a static KV cache and the decoder's step compiled (the first call
            of a shape compiles, for tens of seconds on a CPU; later ones reuse it).

    Returns:
        one string (or id list) per prompt, special tokens removed.
    """
    ids, _ = generate_ids(model, prompts, mode=mode, max_new_tokens=max_new_tokens, do_sample=do_sample,
                          temperature=temperature, top_p=top_p, top_k=top_k, num_beams=num_beams,
                          min_new_tokens=min_new_tokens, use_cache=use_cache, repetition_penalty=repetition_penalty,
                          seed=seed, streamer=streamer, stopping_criteria=stopping_criteria, compile=compile)
    if return_ids:
        return ids
    return [model.tokenizer.decode(r, skip_special_tokens=True).strip() for r in ids]


@torch.no_grad()
def generate_ids(model, prompts: list[Prompt] | Prompt, *, mode: Mode = "chat", max_new_tokens: int = 64,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, top_k: int | None = None,
                 num_beams: int = 1, min_new_tokens: int | None = None, use_cache: bool = True,
                 repetition_penalty: float | None = None, seed: int | None = None,
                 streamer=None, stopping_criteria=None, compile: bool = False) -> tuple[list[list[int]], list[int]]:
    """:func:`generate`'s token ids (cut at the first stop token) and each prompt's length in
    tokens (media tokens included): what a server reports as usage."""
    if isinstance(prompts, Sample) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], dict)):
        prompts = [prompts]
    was_training = model.training
    model.eval()
    try:
        batch = prepare(model, list(prompts), max_new_tokens, mode)
        if seed is not None:
            torch.manual_seed(seed)
        kw = _generate_kwargs(model, max_new_tokens, do_sample, temperature, top_p, top_k, num_beams,
                              min_new_tokens, use_cache, repetition_penalty, compile)
        out = continue_ids(model, batch["input_ids"], batch["attention_mask"], batch["media"], streamer=streamer,
                           stopping_criteria=stopping_criteria, **kw)  # (B, new)
    finally:
        model.train(was_training)
    stops = set(model.stop_token_ids) | {model.pad_token_id}
    ids = []
    for row in out.tolist():
        cut = next((i for i, t in enumerate(row) if t in stops), len(row))
        ids.append(row[:cut])
    return ids, batch["attention_mask"].sum(dim=1).tolist()


def continue_ids(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, media: dict | None, **kwargs):
    """The new tokens after left-padded ``input_ids`` (B, T) whose media placeholders are filled
    from ``media`` (per modality ``(values, lengths)``): media are encoded once, the prompt is
    embedded once, and the decoder's ``generate`` (``kwargs``: its generation arguments) runs
    with its KV cache. The one decoding step under :func:`generate` and the transformers class
    of :mod:`mmgpt.hf`. Returns (B, new) ids, or the decoder's output object when it asks for one."""
    embeds = model.embed(input_ids, media)  # (B, T, H)
    return model.decoder.generate(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)


class _Cancel(StoppingCriteria):
    """Ends a generation once ``event`` is set (the reader of its stream went away)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def stream_answer(model, prompt: Prompt, lock=None, **kwargs) -> Iterator[str]:
    """Yield the text of one prompt's answer piece by piece as it is generated.

    A background thread runs :func:`generate` (holding ``lock`` while it does, so one model can
    serve several callers one at a time); a stream closed before its end stops the generation
    at its next token and waits for it, so nothing runs on for nobody; an error there is raised
    here.

    Args:
        model: an MMGPT.
        prompt: chat messages or a Sample.
        lock: a lock held around the generation, or None.
        **kwargs: as for :func:`generate`.
    """
    cancel = threading.Event()
    streamer = TextIteratorStreamer(model.tokenizer, skip_prompt=True, skip_special_tokens=True)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with lock if lock is not None else contextlib.nullcontext():
                generate(model, [prompt], streamer=streamer, stopping_criteria=StoppingCriteriaList([_Cancel(cancel)]),
                         **kwargs)
        except BaseException as e:  # re-raised in the caller's thread below
            errors.append(e)
            streamer.end()

    thread = threading.Thread(target=run, name="mmgpt-generate", daemon=True)
    thread.start()
    try:
        yield from streamer
    finally:  # the caller stopped reading (a stop string, a closed connection): stop generating too
        cancel.set()
        thread.join()
    if errors:
        raise errors[0]


def chat(model, messages: list[dict], stream: bool = False, **kwargs) -> str | Iterator[str]:
    """Answer the last user turn of ``messages``.

    Returns:
        the answer, or with ``stream=True`` an iterator of text pieces as they are generated.
    """
    if stream:
        return stream_answer(model, messages, **kwargs)
    return generate(model, [messages], **kwargs)[0]


def caption(model, prompt: str | None = None, **kwargs) -> str:
    """Caption one media item, given under its modality's name: ``caption(model, image="a.png")``,
    ``caption(model, audio=(wave, 16000))`` (a path, PIL image, numpy array, bytes, or
    ``(waveform, rate)``). Other keyword arguments go to :func:`generate`.

    Raises:
        ValueError: not exactly one media item given.
    """
    media = {m: kwargs.pop(m) for m in list(kwargs) if m in CAPTION_PROMPTS}
    media = {m: v for m, v in media.items() if v is not None}
    if len(media) != 1:
        raise ValueError(f"caption() takes exactly one media item ({' or '.join(f'{m}=' for m in CAPTION_PROMPTS)})")
    (kind, item), = media.items()
    content = [{"type": kind, kind: item}, {"type": "text", "text": prompt or CAPTION_PROMPTS[kind]}]
    return chat(model, [{"role": "user", "content": content}], **kwargs)
