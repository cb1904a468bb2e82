"""Evaluation: one harness for image and audio tasks, zero- and few-shot, with readable reports.

    from mmgpt.eval import evaluate
    result = evaluate(model, "data/shapestones/test.jsonl", shots=(0, 2), out_dir="runs/x/eval")
    print(result.table()); result.flat()   # {"image_qa/accuracy": 0.98, "image_qa/colour": 1.0, ...}

Modules: :mod:`.metrics` (CIDEr, BLEU, WER/CER, exact match, VQA accuracy),
:mod:`.shapestones_score` (per-attribute accuracy from ground truth), :mod:`.tasks` (items per
task from any format), :mod:`.fewshot` (in-context examples and prompt formats),
:mod:`.predict` (model or custom predictors), :mod:`.scoring`, :mod:`.harness`,
:mod:`.report` (JSON, markdown, PNG), :mod:`.hook` (evaluation during training), :mod:`.cli`.

Names load on first use, so ``mmgpt --help`` does not import torch through this package.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

_LAZY = {
    "EvalResult": "mmgpt.eval.result",
    "evaluate": "mmgpt.eval.harness",
    "load_samples": "mmgpt.eval.harness",
    "PeriodicEval": "mmgpt.eval.hook",
    "ModelPredictor": "mmgpt.eval.predict",
    "Predictor": "mmgpt.eval.predict",
    "TASKS": "mmgpt.eval.tasks",
    "EvalItem": "mmgpt.eval.tasks",
    **{name: "mmgpt.eval.metrics" for name in
       ("bleu", "cer", "cider", "exact_match", "normalize_answer", "vqa_accuracy", "wer")},
}

if TYPE_CHECKING:
    from mmgpt.eval.harness import evaluate, load_samples
    from mmgpt.eval.hook import PeriodicEval
    from mmgpt.eval.metrics import bleu, cer, cider, exact_match, normalize_answer, vqa_accuracy, wer
    from mmgpt.eval.predict import ModelPredictor, Predictor
    from mmgpt.eval.result import EvalResult
    from mmgpt.eval.tasks import TASKS, EvalItem


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmgpt.eval' has no attribute {name!r}")


__all__ = [
    "TASKS",
    "EvalItem",
    "EvalResult",
    "ModelPredictor",
    "PeriodicEval",
    "Predictor",
    "bleu",
    "cer",
    "cider",
    "evaluate",
    "exact_match",
    "load_samples",
    "normalize_answer",
    "vqa_accuracy",
    "wer",
]
