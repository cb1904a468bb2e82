"""Per-attribute scoring of ShapesTones answers and captions against the ground truth in ``meta``.

Answers are read back into an attribute's vocabulary (:data:`VOCAB`): ``"It is red."`` states
``colour = red``; number words and digits are alike. Captions are parsed back into attributes by
a small parser that knows the canonical format (``"two shapes: a small red circle at the top left
and a large blue star at the bottom right."``, ``"three short loud high square beeps."``) but
tolerates other wording: the count is the first number, each object is the words before a
position, and each clip attribute is the first word of its vocabulary.

Scores are ``{attribute: (correct, total)}`` so they can be summed over items (micro average):
an image caption gives ``count`` (1 per image) and ``colour`` / ``shape`` / ``size`` /
``position`` (1 per ground-truth object); a clip caption gives each audio attribute once; a
question gives its own attribute once. A perfect caption or answer scores every attribute.
"""

from __future__ import annotations

import re
from typing import Any

from mmgpt.datasets.shapestones import AUDIO_ATTRIBUTES, VOCAB
from mmgpt.eval.metrics import normalize_answer, vqa_accuracy

Scores = dict[str, tuple[int, int]]
OBJECT_ATTRIBUTES = ("colour", "shape", "size")


def _pattern(terms: list[str]) -> re.Pattern:
    # longest first so "top left" wins over a shorter term; whole words only
    alts = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
    return re.compile(rf"(?<!\S)(?:{alts})(?!\S)")


_NORMALISED = {attr: {normalize_answer(t): t for t in terms} for attr, terms in VOCAB.items()}
_PATTERNS = {attr: _pattern(list(terms)) for attr, terms in _NORMALISED.items()}
_SHAPE_PLURAL = _pattern([*_NORMALISED["shape"], *(s + "s" for s in _NORMALISED["shape"])])
_NUMBER = re.compile(r"(?<!\S)\d+(?!\S)")


def find_term(text: str, attribute: str) -> str | None:
    """The first value of ``attribute``'s vocabulary stated in ``text``.

    Args:
        text: free text (an answer or part of a caption).
        attribute: a key of :data:`VOCAB` (``colour``, ``beeps``, ``crossmodal``...).

    Returns:
        The canonical value (``"three"``, ``"top left"``), or None when none is stated.

    Raises:
        KeyError: ``attribute`` is not a ShapesTones attribute.
    """
    m = _PATTERNS[attribute].search(normalize_answer(text))
    return _NORMALISED[attribute][m.group(0)] if m else None


def qa_correct(prediction: str, answer: str, attribute: str | None) -> float:
    """1.0 when the prediction states the answer of its attribute.

    For a ShapesTones attribute the prediction is read into the attribute's vocabulary (the
    first value it states must be ``answer``); otherwise it is VQA accuracy on normalised text.
    """
    if attribute in VOCAB:
        return float(find_term(prediction, attribute) == answer)
    return vqa_accuracy(prediction, [answer])


def _first_number(normalised: str) -> int | None:
    m = _NUMBER.search(normalised)
    return int(m.group(0)) if m else None


def parse_image_caption(text: str) -> dict[str, Any]:
    """Read an image caption back into a count and objects.

    Args:
        text: a caption such as ``"two shapes: a small red circle at the top left and ..."``.

    Returns:
        ``{"count": int | None, "objects": [{"position", "colour", "shape", "size"}]}``; an
        attribute the caption does not state is None. Objects are in the order stated.
    """
    head, sep, body = text.partition(":")
    if not sep:
        head, body = text, text
    count = _first_number(normalize_answer(head))
    body_n = normalize_answer(body)
    objects, start = [], 0
    for m in _PATTERNS["position"].finditer(body_n):
        phrase = body_n[start : m.start()]
        start = m.end()
        obj: dict[str, Any] = {"position": _NORMALISED["position"][m.group(0)]}
        for attr in ("colour", "size"):
            hit = _PATTERNS[attr].search(phrase)
            obj[attr] = _NORMALISED[attr][hit.group(0)] if hit else None
        hit = _SHAPE_PLURAL.search(phrase)
        word = hit.group(0) if hit else ""
        obj["shape"] = _NORMALISED["shape"].get(word) or _NORMALISED["shape"].get(word[:-1])  # "circles"
        objects.append(obj)
    return {"count": count, "objects": objects}


def parse_audio_caption(text: str) -> dict[str, Any]:
    """Read a clip caption back into ``{"beeps": int | None, "pitch", "waveform", "duration", "loudness"}``."""
    out: dict[str, Any] = {"beeps": _first_number(normalize_answer(text))}
    for attr in AUDIO_ATTRIBUTES:
        if attr != "beeps":
            out[attr] = find_term(text, attr)
    return out


def score_image_caption(prediction: str, objects: list[dict]) -> Scores:
    """Per-attribute scores of an image caption against the image's ground-truth objects.

    ``count``: the stated number equals the number of objects. ``colour`` / ``shape`` /
    ``size``: per ground-truth object, the caption's object at the same position has that
    value. ``position``: per ground-truth object, the caption puts an object of the same colour
    and shape at its position.
    """
    parsed = parse_image_caption(prediction)
    at: dict[str, dict] = {}
    for obj in parsed["objects"]:
        at.setdefault(obj["position"], obj)  # the first object stated at a position counts
    scores: Scores = {"count": (int(parsed["count"] == len(objects)), 1)}
    for attr in OBJECT_ATTRIBUTES:
        hits = sum(at.get(o["position"], {}).get(attr) == o[attr] for o in objects)
        scores[attr] = (hits, len(objects))
    placed = sum(
        any(p["position"] == o["position"] and p["colour"] == o["colour"] and p["shape"] == o["shape"]
            for p in parsed["objects"])
        for o in objects
    )
    scores["position"] = (placed, len(objects))
    return scores


def score_audio_caption(prediction: str, truth: dict) -> Scores:
    """Per-attribute scores (each 0 or 1 of 1) of a clip caption against the clip's ground truth."""
    parsed = parse_audio_caption(prediction)
    return {attr: (int(parsed[attr] == truth[attr]), 1) for attr in AUDIO_ATTRIBUTES}


def attribute_scores(task: str, prediction: str, reference: str, attribute: str | None,
                     meta: dict[str, Any]) -> Scores | None:
    """Per-attribute scores of one prediction, or None when the item has no ShapesTones ground truth.

    Args:
        task: the item's task (``image_caption``, ``image_qa``, ``chat``...).
        prediction: the model's text.
        reference: the canonical answer (QA) or caption.
        attribute: the attribute asked about (QA, chat turns), or None.
        meta: the sample's meta (``meta["image"]`` objects, ``meta["audio"]`` truth for captions).
    """
    if task == "image_caption" and _is_objects(meta.get("image")):
        return score_image_caption(prediction, meta["image"])
    if task == "audio_caption" and isinstance(meta.get("audio"), dict) and "beeps" in meta["audio"]:
        return score_audio_caption(prediction, meta["audio"])
    if attribute in VOCAB:
        return {attribute: (int(qa_correct(prediction, reference, attribute)), 1)}
    return None


def _is_objects(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(o, dict) and "colour" in o for o in value)
