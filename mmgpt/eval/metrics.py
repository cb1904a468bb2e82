"""Text metrics from well-kept libraries: CIDEr (pycocoevalcap), BLEU (sacrebleu), WER / CER (jiwer),
plus exact match and VQA-style accuracy on normalised answers.

Scales: ``cider`` as pycocoevalcap reports it (0–10, ×100 in most papers), ``bleu`` as sacrebleu
reports it (0–100); every other metric is a fraction in [0, 1] (``wer`` / ``cer`` can exceed 1).

Each corpus metric takes ``predictions: list[str]`` and ``references: list[list[str]]`` (one list
of reference strings per prediction).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_WORD_TO_DIGIT = {w: str(i) for i, w in enumerate(NUMBER_WORDS)}
_ARTICLES = {"a", "an", "the"}
_PUNCT = re.compile(r"[^\w\s]")
_CAPTION_TOKENS = re.compile(r"\w+|[^\w\s]")


def _check_lengths(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    empty = next((i for i, r in enumerate(references) if not r), None)
    if empty is not None:
        raise ValueError(f"prediction {empty} has no reference")


def normalize_answer(text: str) -> str:
    """VQA-style normalisation: lower case, punctuation and articles removed, number words as digits.

    Args:
        text: an answer.

    Returns:
        The normalised answer, words separated by single spaces (``"Two red circles."`` ->
        ``"2 red circles"``).
    """
    words = _PUNCT.sub(" ", text.lower()).split()
    return " ".join(_WORD_TO_DIGIT.get(w, w) for w in words if w not in _ARTICLES)


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the prediction equals a reference (case and surrounding whitespace ignored), else 0.0."""
    p = prediction.strip().lower()
    return float(any(p == r.strip().lower() for r in references))


def vqa_accuracy(prediction: str, references: Sequence[str]) -> float:
    """VQA accuracy of one answer on normalised strings.

    With one reference it is 1.0 on a match and 0.0 otherwise; with several it is
    ``min(#matching references / 3, 1)`` (VQA's rule; the official leave-one-annotator-out
    averaging over ten answers is not applied).

    Args:
        prediction: the model's answer.
        references: the reference answers (at least one).

    Returns:
        The accuracy in [0, 1].

    Raises:
        ValueError: no reference.
    """
    if not references:
        raise ValueError("vqa_accuracy needs at least one reference")
    p = normalize_answer(prediction)
    matches = sum(p == normalize_answer(r) for r in references)
    if len(references) == 1:
        return float(matches)
    return min(matches / 3.0, 1.0)


def caption_tokens(text: str) -> str:
    """Simple caption tokenisation for CIDEr (no Java PTB tokenizer): lower case, punctuation split off.

    ``"A cat, sitting."`` -> ``"a cat , sitting ."``
    """
    return " ".join(_CAPTION_TOKENS.findall(text.lower()))


def cider(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus CIDEr (pycocoevalcap's scorer: n = 1..4, sigma = 6, document frequencies from the references).

    Args:
        predictions: one caption per item.
        references: the reference captions of each item.

    Returns:
        The mean CIDEr over items (0 when there are none). Document frequencies come from the
        references of this corpus, so one item alone always scores 0.

    Raises:
        ValueError: the lengths differ or an item has no reference.
    """
    from pycocoevalcap.cider.cider import Cider

    _check_lengths(predictions, references)
    if not predictions:
        return 0.0
    gts = {i: [caption_tokens(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [caption_tokens(p)] for i, p in enumerate(predictions)}
    score, _ = Cider().compute_score(gts, res)
    return float(score)


def bleu(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 with sacrebleu's defaults (13a tokenisation, exp smoothing), 0–100.

    Items may have different numbers of references; missing ones are padded as sacrebleu expects.

    Raises:
        ValueError: the lengths differ or an item has no reference.
    """
    import sacrebleu

    _check_lengths(predictions, references)
    if not predictions:
        return 0.0
    width = max(len(r) for r in references)
    # sacrebleu wants reference streams: stream j holds the j-th reference of every item (None = absent)
    streams = [[refs[j] if j < len(refs) else None for refs in references] for j in range(width)]
    return float(sacrebleu.corpus_bleu(list(predictions), streams).score)


def wer(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus word error rate (jiwer): (substitutions + deletions + insertions) / reference words.

    Args:
        predictions: hypothesis transcripts.
        references: one reference transcript per hypothesis (non-empty).

    Raises:
        ValueError: the lengths differ.
    """
    import jiwer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        return 0.0
    return float(jiwer.wer(list(references), list(predictions)))


def cer(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus character error rate (jiwer), like :func:`wer` on characters.

    Raises:
        ValueError: the lengths differ.
    """
    import jiwer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        return 0.0
    return float(jiwer.cer(list(references), list(predictions)))


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean, 0.0 for no values."""
    return float(sum(values) / len(values)) if values else 0.0
