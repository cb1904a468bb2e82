"""Predictors: what turns a batch of prompts into answers.

The harness talks to a :class:`Predictor`; :class:`ModelPredictor` wraps an MMGPT (batched,
greedy, left-padded generation). Anything with the same call signature works, e.g. a predictor
that answers from the ground truth, which checks the scorer rather than a model.
"""

from __future__ import annotations

from typing import Protocol

import torch

from mmgpt.batching import collate
from mmgpt.datasets.schema import Sample
from mmgpt.errors import ConfigError, ContextOverflowError
from mmgpt.eval.fewshot import FORMATS, PromptFormat
from mmgpt.eval.tasks import EvalItem


class Predictor(Protocol):
    """Answers a batch of prompts.

    Args:
        prompts: the built prompts (chat or completion Samples), one per item.
        items: the items the prompts ask about (task, references, ground truth).
        max_new_tokens: the generation budget per answer.

    Returns:
        One answer string per prompt, in order.

    Raises:
        ContextOverflowError: a prompt does not fit the context (the harness then retries it
            with fewer examples).
    """

    def __call__(self, prompts: list[Sample], items: list[EvalItem], max_new_tokens: int) -> list[str]: ...


class ModelPredictor:
    """Greedy batched generation with an MMGPT.

    Args:
        model: an :class:`mmgpt.model.MMGPT`.
        format: ``"chat"`` (prompts go through ``model.generate`` with the ChatML generation
            prompt) or ``"completion"`` (role-less documents continued as they are; the answer is
            the first line of the continuation).

    Raises:
        ConfigError: unknown format.
    """

    def __init__(self, model, format: PromptFormat = "chat") -> None:
        if format not in FORMATS:
            raise ConfigError(f"format={format!r} is not one of {', '.join(FORMATS)}")
        self.model = model
        self.format = format

    def __call__(self, prompts: list[Sample], items: list[EvalItem], max_new_tokens: int) -> list[str]:
        if self.format == "chat":
            return self.model.generate(prompts, max_new_tokens=max_new_tokens, do_sample=False)
        return [text.split("\n", 1)[0].strip() for text in complete(self.model, prompts, max_new_tokens)]


@torch.no_grad()
def complete(model, prompts: list[Sample], max_new_tokens: int) -> list[str]:
    """Continue role-less documents greedily (no chat markers, no end-of-text after the prompt).

    Args:
        model: an MMGPT.
        prompts: document samples.
        max_new_tokens: tokens to generate at most.

    Returns:
        The raw continuation of each prompt (special tokens removed).

    Raises:
        ContextOverflowError: ``max_new_tokens`` leaves no room, or a prompt's media alone do not fit.
    """
    budget = model.config.max_length - max_new_tokens
    if budget < 1:
        raise ContextOverflowError(
            f"max_new_tokens={max_new_tokens} does not fit the context of {model.config.max_length} tokens"
        )
    encoded = []
    for prompt in prompts:
        enc = model.processor(prompt, max_length=budget + 1)  # + the <|endoftext|> dropped below
        enc.input_ids, enc.labels = enc.input_ids[:-1], enc.labels[:-1]
        encoded.append(enc)
    batch = collate(encoded, model.pad_token_id, padding_side="left")
    dev = model.device
    batch = {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    was_training = model.training
    model.eval()
    try:
        embeds = model.embed(batch)  # (B, T, H)
        out = model.decoder.generate(
            inputs_embeds=embeds, attention_mask=batch["attention_mask"], max_new_tokens=max_new_tokens,
            do_sample=False, eos_token_id=model.stop_token_ids, pad_token_id=model.pad_token_id,
        )  # (B, new tokens)
    finally:
        model.train(was_training)
    stops = set(model.stop_token_ids) | {model.pad_token_id}
    texts = []
    for row in out.tolist():
        cut = next((i for i, t in enumerate(row) if t in stops), len(row))
        texts.append(model.tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
    return texts
