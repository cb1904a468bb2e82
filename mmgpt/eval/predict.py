"""Predictors: what turns a batch of prompts into answers.

The harness talks to a :class:`Predictor`; :class:`ModelPredictor` wraps an MMGPT (batched,
greedy, left-padded generation). Anything with the same call signature works, e.g. a predictor
that answers from the ground truth, which checks the scorer rather than a model.
"""

from __future__ import annotations

from typing import Protocol

from mmgpt.datasets.schema import Sample
from mmgpt.errors import ConfigError
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
            prompt) or ``"completion"`` (role-less documents continued as they are, ``mode=
            "completion"`` of :func:`mmgpt.generation.generate`; the answer is the first line of
            the continuation).

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
        texts = self.model.generate(prompts, mode="completion", max_new_tokens=max_new_tokens, do_sample=False)
        return [text.split("\n", 1)[0].strip() for text in texts]
