"""Metrics against hand-computed values, and the ShapesTones caption / answer readers."""

from __future__ import annotations

import math

import pytest

from mmgpt.eval.metrics import (
    bleu,
    caption_tokens,
    cer,
    cider,
    exact_match,
    normalize_answer,
    vqa_accuracy,
    wer,
)
from mmgpt.eval.shapestones_score import (
    attribute_scores,
    find_term,
    parse_image_caption,
    qa_correct,
    score_audio_caption,
    score_image_caption,
)


def test_cider_known_pair():
    # Two images, one reference each. Every reference n-gram occurs in one image only, so
    # idf = log(2) for all. Image 1 is exact: 1- and 2-gram cosines are 1, 3/4-grams empty ->
    # 10 * (1 + 1 + 0 + 0) / 4 = 5. Image 2 shares "c" of {c, d} vs {c, e}: 1-gram cosine 1/2,
    # no 2-gram match -> 10 * 0.5 / 4 = 1.25. Corpus CIDEr = mean = 3.125.
    assert cider(["a b", "c e"], [["a b"], ["c d"]]) == pytest.approx(3.125)
    assert cider(["A b.", "C e"], [["a b ."], ["c d"]]) == pytest.approx(cider(["a b .", "c e"], [["a b ."], ["c d"]]))
    # a single image has no document-frequency contrast: always 0
    assert cider(["a b"], [["a b"]]) == 0.0


def test_caption_tokens_split_punctuation():
    assert caption_tokens("A cat, sitting.") == "a cat , sitting ."


def test_bleu_known_pair():
    # 8 words, the last one wrong: p1..p4 = 7/8, 6/7, 5/6, 4/5, no brevity penalty
    # BLEU = (7/8 * 6/7 * 5/6 * 4/5) ** (1/4) = 0.5 ** 0.25
    assert bleu(["a b c d e f g x"], [["a b c d e f g h"]]) == pytest.approx(100 * 0.5**0.25)
    assert bleu(["the cat sat on the mat"], [["the cat sat on the mat"]]) == pytest.approx(100.0)
    # several references of different numbers per item are accepted
    assert bleu(["a b c d e f g h", "x"], [["a b c d e f g h", "z"], ["x y"]]) > 0


def test_wer_cer_known_pairs():
    # "sat" -> "sit" (1 substitution), second "the" deleted: 2 errors / 6 reference words
    assert wer(["the cat sit on mat"], ["the cat sat on the mat"]) == pytest.approx(2 / 6)
    assert cer(["abed"], ["abcd"]) == pytest.approx(0.25)
    assert wer([], []) == 0.0
    with pytest.raises(ValueError):
        wer(["a"], [])


def test_exact_match_and_vqa_accuracy():
    assert exact_match("  Three ", ["three"]) == 1.0
    assert exact_match("three.", ["three"]) == 0.0
    assert normalize_answer("The Two red circles!") == "2 red circles"
    assert vqa_accuracy("Two.", ["2"]) == 1.0
    assert vqa_accuracy("a square", ["square"]) == 1.0
    assert vqa_accuracy("two", ["three"]) == 0.0
    refs = ["two", "2", "two", "three"]
    assert vqa_accuracy("Two.", refs) == 1.0  # 3 matches -> min(3/3, 1)
    assert vqa_accuracy("three", refs) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        cider(["a"], [])


OBJECTS = [
    {"shape": "circle", "colour": "red", "size": "large", "position": "top left"},
    {"shape": "star", "colour": "blue", "size": "small", "position": "bottom right"},
]
PERFECT = "two shapes: a large red circle at the top left and a small blue star at the bottom right."


def test_image_caption_parser_reads_the_canonical_caption():
    parsed = parse_image_caption(PERFECT)
    assert parsed["count"] == 2
    assert parsed["objects"] == [
        {"position": "top left", "colour": "red", "size": "large", "shape": "circle"},
        {"position": "bottom right", "colour": "blue", "size": "small", "shape": "star"},
    ]
    assert score_image_caption(PERFECT, OBJECTS) == {a: ((1, 1) if a == "count" else (2, 2))
                                                     for a in ("count", "colour", "shape", "size", "position")}


def test_image_caption_scores_each_object_at_its_position():
    # wrong colour on the second object: colour 1/2 and that object's position claim fails too;
    # "3" shapes is the wrong count; plural shape words are read
    text = "3 shapes: a large red circle at the top left and a small green stars at the bottom right."
    s = score_image_caption(text, OBJECTS)
    assert s == {"count": (0, 1), "colour": (1, 2), "shape": (2, 2), "size": (2, 2), "position": (1, 2)}
    # objects swapped between corners: every attribute at each position is wrong
    swapped = "two shapes: a small blue star at the top left and a large red circle at the bottom right."
    assert score_image_caption(swapped, OBJECTS) == {"count": (1, 1), "colour": (0, 2), "shape": (0, 2),
                                                     "size": (0, 2), "position": (0, 2)}
    assert score_image_caption("", OBJECTS)["colour"] == (0, 2)


def test_audio_caption_and_answers():
    truth = {"pitch": "high", "waveform": "square", "beeps": 3, "duration": "short", "loudness": "loud"}
    assert score_audio_caption("three short loud high square beeps.", truth) == {
        a: (1, 1) for a in ("beeps", "pitch", "waveform", "duration", "loudness")}
    s = score_audio_caption("2 long loud high sine beeps", truth)
    assert s == {"beeps": (0, 1), "pitch": (1, 1), "waveform": (0, 1), "duration": (0, 1), "loudness": (1, 1)}
    assert find_term("It is red.", "colour") == "red"
    assert find_term("at the top left", "position") == "top left"
    assert find_term("nothing", "colour") is None
    assert qa_correct("3", "three", "beeps") == 1.0
    assert qa_correct("Yes, it is.", "yes", "crossmodal") == 1.0
    assert qa_correct("red", "blue", "colour") == 0.0
    assert qa_correct("a cat", "cat", None) == 1.0  # not a ShapesTones attribute: VQA accuracy
    assert attribute_scores("image_caption", PERFECT, PERFECT, None, {"image": OBJECTS})["count"] == (1, 1)
    assert attribute_scores("image_qa", "red", "red", "colour", {}) == {"colour": (1, 1)}
    assert attribute_scores("image_qa", "cat", "cat", None, {}) is None
    assert not math.isnan(bleu(["x"], [["y"]]))
