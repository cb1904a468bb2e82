"""Score one task's predictions: corpus metrics, per-item records and per-attribute accuracy.

Metrics by task:

=================  ===================================================================
captions           ``cider``, ``bleu``, ``exact_match``; with ShapesTones ground truth also
                   ``per_attribute`` and ``attribute_accuracy`` (their mean)
QA and chat        ``accuracy`` (the attribute read from the answer for ShapesTones, VQA
                   accuracy otherwise), ``vqa_accuracy``, ``exact_match``, ``per_attribute``
transcription      ``wer``, ``cer``, ``exact_match``
=================  ===================================================================

Every task also has ``n`` (items scored). Per-attribute accuracy is a micro average: the sum
of correct judgements over the sum of judgements (a caption of three shapes counts three
colour judgements).
"""

from __future__ import annotations

from typing import Any

from mmgpt.datasets.shapestones import VOCAB
from mmgpt.eval.metrics import bleu, cer, cider, exact_match, mean, vqa_accuracy, wer
from mmgpt.eval.shapestones_score import attribute_scores, qa_correct
from mmgpt.eval.tasks import CAPTION_TASKS, QA_TASKS, EvalItem, turn_text

#: attribute order in tables and charts
ATTRIBUTE_ORDER = tuple(VOCAB)
#: the one number that sums up each task (used for accuracy-vs-shots charts)
HEADLINE = {"image_caption": ("attribute_accuracy", "cider"), "audio_caption": ("attribute_accuracy", "cider"),
            "transcription": ("wer",)}


def headline(task: str, metrics: dict[str, Any]) -> tuple[str, float] | None:
    """``(metric name, value)`` of the task's main metric, or None when it has none."""
    for name in HEADLINE.get(task, ("accuracy",)):
        if isinstance(metrics.get(name), float):
            return name, metrics[name]
    return None


def _question(item: EvalItem) -> str:
    return turn_text(item.query.turns[-1]) if item.query.turns else ""


def score_task(task: str, items: list[EvalItem], predictions: list[str]) -> tuple[dict[str, Any], list[dict]]:
    """Metrics of one task and a record per item.

    Args:
        task: the task name.
        items: the scored items.
        predictions: one answer per item.

    Returns:
        ``(metrics, records)``: metrics as in the module docstring; each record holds
        ``source``, ``question``, ``prediction``, ``references``, ``exact_match`` and, where
        they apply, ``attribute``, ``correct`` (QA) and ``attributes`` (``{name: [correct, total]}``).

    Raises:
        ValueError: the numbers of items and predictions differ.
    """
    if len(items) != len(predictions):
        raise ValueError(f"{task}: {len(items)} items but {len(predictions)} predictions")
    refs = [it.references for it in items]
    totals: dict[str, list[int]] = {}
    records, correct, vqa, em = [], [], [], []
    for item, pred in zip(items, predictions):
        rec: dict[str, Any] = {"source": item.source, "question": _question(item), "prediction": pred,
                               "references": item.references}
        em.append(exact_match(pred, item.references))
        rec["exact_match"] = em[-1]
        if item.attribute is not None:
            rec["attribute"] = item.attribute
        if task in QA_TASKS:
            vqa.append(vqa_accuracy(pred, item.references))
            correct.append(qa_correct(pred, item.answer, item.attribute) if item.attribute in VOCAB else vqa[-1])
            rec["correct"] = correct[-1]
        scores = attribute_scores(task, pred, item.answer, item.attribute, item.meta)
        if scores:
            rec["attributes"] = {a: [c, n] for a, (c, n) in scores.items()}
            for a, (c, n) in scores.items():
                acc = totals.setdefault(a, [0, 0])
                acc[0] += c
                acc[1] += n
        records.append(rec)

    metrics: dict[str, Any] = {"n": len(items)}
    if task in QA_TASKS:
        metrics["accuracy"] = mean(correct)
        metrics["vqa_accuracy"] = mean(vqa)
    if task in CAPTION_TASKS:
        metrics["cider"] = cider(predictions, refs)
        metrics["bleu"] = bleu(predictions, refs)
    if task == "transcription":
        metrics["wer"] = wer(predictions, [r[0] for r in refs])
        metrics["cer"] = cer(predictions, [r[0] for r in refs])
    metrics["exact_match"] = mean(em)
    if totals:
        per = {a: totals[a][0] / totals[a][1] for a in sorted(totals, key=_attr_rank) if totals[a][1]}
        metrics["per_attribute"] = per
        if task in CAPTION_TASKS:
            metrics["attribute_accuracy"] = mean(list(per.values()))
    return metrics, records


def _attr_rank(name: str) -> tuple[int, str]:
    return (ATTRIBUTE_ORDER.index(name) if name in ATTRIBUTE_ORDER else len(ATTRIBUTE_ORDER), name)
