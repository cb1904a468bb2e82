"""Text of the ShapesTones world: canonical captions, questions with paraphrases, answers.

References are canonical (one exact string per ground truth, objects in cell order) because
exact match is the score; prompts vary in wording, picked by the item's random generator.

Examples::

    two shapes: a large red circle at the top left and a small blue star at the bottom right.
    three short loud high square beeps.
"""

from __future__ import annotations

import numpy as np

from mmgpt.errors import ConfigError

from .world import (
    AUDIO_ATTRIBUTES,
    CROSSMODAL_KINDS,
    IMAGE_ATTRIBUTES,
    NUMBER_WORDS,
    colour_count,
)

IMAGE_CAPTION_PROMPTS = ("Describe the picture.", "What is in this image?", "Write a caption for the image.")
AUDIO_CAPTION_PROMPTS = ("Describe the sound.", "What do you hear?", "Write a caption for the audio clip.")

IMAGE_QUESTIONS: dict[str, tuple[str, ...]] = {
    "count": ("How many shapes are there?", "How many shapes can you see?", "Count the shapes in the picture."),
    "colour": (
        "What colour is the shape at the {position}?",
        "What is the colour of the shape at the {position}?",
        "Which colour does the shape at the {position} have?",
    ),
    "shape": (
        "What shape is at the {position}?",
        "Which shape is at the {position}?",
        "What kind of shape is at the {position}?",
    ),
    "size": (
        "Is the shape at the {position} small or large?",
        "Is the {position} shape large or small?",
        "How big is the shape at the {position}, small or large?",
    ),
    "position": (
        "Where is the {colour} {shape}?",
        "In which corner is the {colour} {shape}?",
        "Where can you see the {colour} {shape}?",
    ),
}
AUDIO_QUESTIONS: dict[str, tuple[str, ...]] = {
    "beeps": ("How many beeps are there?", "How many beeps do you hear?", "Count the beeps in the sound."),
    "pitch": (
        "Is the pitch low, mid or high?",
        "Are the beeps low, mid or high?",
        "What is the pitch of the beeps: low, mid or high?",
    ),
    "waveform": (
        "What waveform do the beeps have?",
        "Is the tone a sine, square or sawtooth wave?",
        "Which waveform is it: sine, square or sawtooth?",
    ),
    "duration": ("Are the beeps short or long?", "Is each beep short or long?", "How long are the beeps, short or long?"),
    "loudness": ("Are the beeps quiet or loud?", "Is the sound quiet or loud?", "How loud are the beeps, quiet or loud?"),
}
CROSSMODAL_QUESTIONS: dict[str, tuple[str, ...]] = {
    "equal": (
        "Are there as many shapes as beeps?",
        "Is the number of shapes equal to the number of beeps?",
        "Do the shapes and the beeps have the same count?",
    ),
    "more": (
        "Are there more shapes than beeps?",
        "Is the number of shapes greater than the number of beeps?",
        "Do you see more shapes than you hear beeps?",
    ),
    "more_beeps": (
        "Are there more beeps than shapes?",
        "Are there fewer shapes than beeps?",
        "Do you hear more beeps than you see shapes?",
    ),
    "colour_equal": (
        "Is the number of beeps equal to the number of {colour} shapes?",
        "Are there as many beeps as {colour} shapes?",
        "Do the beeps match the number of {colour} shapes?",
    ),
    "total": (
        "How many shapes and beeps are there in total?",
        "What is the total number of shapes and beeps?",
        "Count the shapes and the beeps together.",
    ),
}


def _choose(rng: np.random.Generator, items: tuple | list):
    return items[int(rng.integers(len(items)))]


def number_word(n: int) -> str:
    """English word of a count from zero to eight.

    Raises:
        ConfigError: ``n`` is outside 0..8.
    """
    if not 0 <= n < len(NUMBER_WORDS):
        raise ConfigError(f"no number word for {n}")
    return NUMBER_WORDS[n]


def _join(phrases: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def image_caption(objects: list[dict]) -> str:
    """Canonical caption of an image, objects in the order given (canonical cell order).

    Args:
        objects: ``{"shape", "colour", "size", "position"}`` dicts.

    Returns:
        e.g. ``"one shape: a small green square at the bottom left."``

    Raises:
        ConfigError: there are no objects.
    """
    if not objects:
        raise ConfigError("an image caption needs at least one object")
    n = len(objects)
    head = f"{number_word(n)} shape{'s' if n > 1 else ''}: "
    body = _join([f"a {o['size']} {o['colour']} {o['shape']} at the {o['position']}" for o in objects])
    return head + body + "."


def audio_caption(truth: dict) -> str:
    """Canonical caption of a clip: count, duration, loudness, pitch, waveform, beep(s).

    Args:
        truth: ``{"pitch", "waveform", "beeps", "duration", "loudness"}``.

    Returns:
        e.g. ``"three short loud high square beeps."``
    """
    n = truth["beeps"]
    words = [number_word(n), truth["duration"], truth["loudness"], truth["pitch"], truth["waveform"]]
    return " ".join(words) + (" beeps." if n > 1 else " beep.")


def askable_image_attributes(objects: list[dict]) -> tuple[str, ...]:
    """Image attributes that can be asked about: ``position`` needs a unique colour+shape pair."""
    if _unique_objects(objects):
        return IMAGE_ATTRIBUTES
    return tuple(a for a in IMAGE_ATTRIBUTES if a != "position")


def _unique_objects(objects: list[dict]) -> list[dict]:
    pairs = [(o["colour"], o["shape"]) for o in objects]
    return [o for o, p in zip(objects, pairs) if pairs.count(p) == 1]


def image_question(objects: list[dict], attribute: str, rng: np.random.Generator) -> tuple[str, str]:
    """A question about one image and its canonical answer.

    Args:
        objects: the image's ground truth.
        attribute: one of ``count``, ``colour``, ``shape``, ``size``, ``position``.
        rng: picks the wording and the object asked about (always an occupied cell).

    Returns:
        ``(question, answer)``.

    Raises:
        ConfigError: the attribute is unknown, or ``position`` is asked of an image with no
            unique colour+shape pair.
    """
    if attribute not in IMAGE_QUESTIONS:
        raise ConfigError(f"unknown image attribute {attribute!r}")
    template = _choose(rng, IMAGE_QUESTIONS[attribute])
    if attribute == "count":
        return template, number_word(len(objects))
    if attribute == "position":
        unique = _unique_objects(objects)
        if not unique:
            raise ConfigError("no colour+shape pair is unique in this image; cannot ask its position")
        obj = _choose(rng, unique)
        return template.format(colour=obj["colour"], shape=obj["shape"]), obj["position"]
    obj = _choose(rng, objects)
    return template.format(position=obj["position"]), obj[attribute]


def audio_question(truth: dict, attribute: str, rng: np.random.Generator) -> tuple[str, str]:
    """A question about one clip and its canonical answer.

    Args:
        truth: the clip's ground truth.
        attribute: one of ``beeps``, ``pitch``, ``waveform``, ``duration``, ``loudness``.
        rng: picks the wording.

    Returns:
        ``(question, answer)``.

    Raises:
        ConfigError: the attribute is unknown.
    """
    if attribute not in AUDIO_ATTRIBUTES:
        raise ConfigError(f"unknown audio attribute {attribute!r}")
    answer = number_word(truth["beeps"]) if attribute == "beeps" else truth[attribute]
    return _choose(rng, AUDIO_QUESTIONS[attribute]), answer


def crossmodal_answer(objects: list[dict], truth: dict, kind: str, colour: str | None = None) -> str:
    """Canonical answer of a cross-modal question (``yes``/``no`` or a number word).

    Raises:
        ConfigError: the kind is unknown, or ``colour_equal`` has no colour.
    """
    n, b = len(objects), truth["beeps"]
    if kind == "equal":
        return "yes" if n == b else "no"
    if kind == "more":
        return "yes" if n > b else "no"
    if kind == "more_beeps":
        return "yes" if b > n else "no"
    if kind == "colour_equal":
        if colour is None:
            raise ConfigError("a colour_equal question needs a colour")
        return "yes" if colour_count(objects, colour) == b else "no"
    if kind == "total":
        return number_word(n + b)
    raise ConfigError(f"unknown cross-modal kind {kind!r} (expected one of {', '.join(CROSSMODAL_KINDS)})")


def crossmodal_question(
    objects: list[dict], truth: dict, kind: str, rng: np.random.Generator, colour: str | None = None
) -> tuple[str, str]:
    """A question that needs both the image and the clip, and its canonical answer.

    Args:
        objects: the image's ground truth.
        truth: the clip's ground truth.
        kind: one of :data:`CROSSMODAL_KINDS`.
        rng: picks the wording.
        colour: the colour asked about (``colour_equal`` only).

    Returns:
        ``(question, answer)``.

    Raises:
        ConfigError: the kind is unknown, or ``colour_equal`` has no colour.
    """
    answer = crossmodal_answer(objects, truth, kind, colour)
    return _choose(rng, CROSSMODAL_QUESTIONS[kind]).format(colour=colour), answer


def comparison_sentence(n_shapes: int, n_beeps: int, picture: str, sound: str) -> str:
    """``"The picture has more shapes than the sound has beeps."`` and its fewer / as-many forms.

    Args:
        n_shapes: shapes in the picture.
        n_beeps: beeps in the sound.
        picture: how the picture is named (``"The picture"``, ``"Picture 2"``).
        sound: how the sound is named (``"the sound"``, ``"sound 1"``).

    Returns:
        One sentence ending with a full stop.
    """
    if n_shapes == n_beeps:
        return f"{picture} has as many shapes as {sound} has beeps."
    relation = "more" if n_shapes > n_beeps else "fewer"
    return f"{picture} has {relation} shapes than {sound} has beeps."
