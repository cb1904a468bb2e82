"""The ShapesTones world: attribute vocabularies, held-out combinations and scene sampling.

A *scene* is one image (1–4 coloured shapes in a 2×2 grid) and one audio clip (1–4
identical beeps), plus a plan for the cross-modal question asked about the pair. Everything
here is ground truth only (plain dicts of attribute names); :mod:`.draw` and :mod:`.tones`
turn it into pixels and samples, :mod:`.text` into captions and questions.

Image object: ``{"shape", "colour", "size", "position"}``; the objects of an image are in
canonical cell order (:data:`POSITIONS`). Audio truth: ``{"pitch", "waveform", "beeps",
"duration", "loudness"}`` with ``beeps`` an int.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from mmgpt.errors import ConfigError

POSITIONS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 230),
    "yellow": (235, 215, 40),
    "purple": (160, 60, 200),
    "white": (240, 240, 240),
}
SIZES: tuple[str, ...] = ("small", "large")
PITCHES: dict[str, float] = {"low": 261.63, "mid": 523.25, "high": 1046.50}  # C4, C5, C6
WAVEFORMS: tuple[str, ...] = ("sine", "square", "sawtooth")
DURATIONS: dict[str, float] = {"short": 0.12, "long": 0.35}  # seconds per beep
LOUDNESS: dict[str, float] = {"quiet": 0.12, "loud": 0.6}  # peak amplitude
MAX_OBJECTS = 4
MAX_BEEPS = 4
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")

#: (colour, shape) pairs that never occur in an image of train/val/test; every image of the
#: ``gen`` split contains at least one of them.
HELD_OUT_SHAPES: tuple[tuple[str, str], ...] = (("purple", "star"), ("green", "triangle"))
#: (pitch, waveform) pairs that never occur in a clip of train/val/test; every clip of the
#: ``gen`` split is one of them.
HELD_OUT_TONES: tuple[tuple[str, str], ...] = (("high", "sawtooth"),)

#: Cross-modal question kinds: as many shapes as beeps / more shapes than beeps / more beeps
#: than shapes / as many beeps as shapes of a colour / total of shapes and beeps.
CROSSMODAL_KINDS: tuple[str, ...] = ("equal", "more", "more_beeps", "colour_equal", "total")

#: Every answer an attribute can take, for per-attribute scoring from ground truth.
VOCAB: dict[str, tuple[str, ...]] = {
    "count": NUMBER_WORDS[1 : MAX_OBJECTS + 1],
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "size": SIZES,
    "position": POSITIONS,
    "beeps": NUMBER_WORDS[1 : MAX_BEEPS + 1],
    "pitch": tuple(PITCHES),
    "waveform": WAVEFORMS,
    "duration": tuple(DURATIONS),
    "loudness": tuple(LOUDNESS),
    "crossmodal": ("yes", "no", *NUMBER_WORDS[2 : MAX_OBJECTS + MAX_BEEPS + 1]),
}
IMAGE_ATTRIBUTES: tuple[str, ...] = ("count", "colour", "shape", "size", "position")
AUDIO_ATTRIBUTES: tuple[str, ...] = ("beeps", "pitch", "waveform", "duration", "loudness")

HeldOut = Literal["exclude", "require", "allow"]
_HELD_OUT_MODES = ("exclude", "require", "allow")
_ALL_PAIRS = tuple((c, s) for c in COLOURS for s in SHAPES)
_SEEN_PAIRS = tuple(p for p in _ALL_PAIRS if p not in HELD_OUT_SHAPES)
_ALL_TONES = tuple((p, w) for p in PITCHES for w in WAVEFORMS)
_SEEN_TONES = tuple(t for t in _ALL_TONES if t not in HELD_OUT_TONES)


def _check_mode(held_out: str) -> None:
    if held_out not in _HELD_OUT_MODES:
        raise ConfigError(f"held_out must be one of {', '.join(_HELD_OUT_MODES)}, got {held_out!r}")


def _pick(rng: np.random.Generator, items: tuple) -> Any:
    return items[int(rng.integers(len(items)))]


def sample_image_scene(
    rng: np.random.Generator, *, held_out: HeldOut = "exclude", count: int | None = None
) -> dict[str, Any]:
    """Sample the ground truth of one image.

    Args:
        rng: the random generator to draw from.
        held_out: ``"exclude"`` never uses a pair of :data:`HELD_OUT_SHAPES` (train/val/test),
            ``"require"`` puts at least one in the image (gen), ``"allow"`` ignores them.
        count: number of shapes (1–4); uniform when ``None``.

    Returns:
        ``{"objects": [{"shape", "colour", "size", "position"}, ...]}`` in canonical cell order.

    Raises:
        ConfigError: ``held_out`` or ``count`` is out of range.
    """
    _check_mode(held_out)
    n = int(rng.integers(1, MAX_OBJECTS + 1)) if count is None else int(count)
    if not 1 <= n <= MAX_OBJECTS:
        raise ConfigError(f"count must be in 1..{MAX_OBJECTS}, got {count}")
    cells = sorted(int(c) for c in rng.choice(len(POSITIONS), size=n, replace=False))
    pool = _SEEN_PAIRS if held_out == "exclude" else _ALL_PAIRS
    pairs = [_pick(rng, pool) for _ in range(n)]
    if held_out == "require":
        pairs[int(rng.integers(n))] = _pick(rng, HELD_OUT_SHAPES)
    objects = [
        {"shape": shape, "colour": colour, "size": _pick(rng, SIZES), "position": POSITIONS[cell]}
        for cell, (colour, shape) in zip(cells, pairs)
    ]
    return {"objects": objects}


def sample_audio_scene(
    rng: np.random.Generator, *, held_out: HeldOut = "exclude", beeps: int | None = None
) -> dict[str, Any]:
    """Sample the ground truth of one audio clip.

    Args:
        rng: the random generator to draw from.
        held_out: ``"exclude"`` never uses a pair of :data:`HELD_OUT_TONES`, ``"require"``
            always does, ``"allow"`` ignores them.
        beeps: number of beeps (1–4); uniform when ``None``.

    Returns:
        ``{"pitch", "waveform", "beeps", "duration", "loudness"}`` (``beeps`` is an int).

    Raises:
        ConfigError: ``held_out`` or ``beeps`` is out of range.
    """
    _check_mode(held_out)
    n = int(rng.integers(1, MAX_BEEPS + 1)) if beeps is None else int(beeps)
    if not 1 <= n <= MAX_BEEPS:
        raise ConfigError(f"beeps must be in 1..{MAX_BEEPS}, got {beeps}")
    pool = {"exclude": _SEEN_TONES, "require": HELD_OUT_TONES, "allow": _ALL_TONES}[held_out]
    pitch, waveform = _pick(rng, pool)
    return {
        "pitch": pitch,
        "waveform": waveform,
        "beeps": n,
        "duration": _pick(rng, tuple(DURATIONS)),
        "loudness": _pick(rng, tuple(LOUDNESS)),
    }


def colour_count(objects: list[dict], colour: str) -> int:
    """Number of objects of one colour."""
    return sum(o["colour"] == colour for o in objects)


def _count_answer(kind: str, n: int, b: int) -> bool:
    """Yes/no answer of a count comparison between ``n`` shapes and ``b`` beeps."""
    return {"equal": n == b, "more": n > b, "more_beeps": n < b}[kind]


def sample_scene(rng: np.random.Generator, *, held_out: HeldOut = "exclude") -> dict[str, Any]:
    """Sample one scene: an image, a clip, and the cross-modal question asked about them.

    The question kind is drawn first (uniform over :data:`CROSSMODAL_KINDS`), then for the
    yes/no kinds the answer (50/50), and the scene is built to have that answer: for count
    comparisons the (shapes, beeps) pair is uniform over the pairs with that answer (the
    mirrored kinds ``more`` / ``more_beeps`` keep both counts uniform overall); for
    ``colour_equal`` the beep count is set to (yes) or away from (no) the count of the colour
    asked about. So yes and no are balanced within every kind, by construction.

    Args:
        rng: the random generator to draw from.
        held_out: applies to both the image and the clip (see :func:`sample_image_scene`).

    Returns:
        ``{"image": [objects], "audio": {truth}, "crossmodal": {"kind", "colour"}}``;
        ``colour`` is ``None`` unless the kind is ``"colour_equal"``.

    Raises:
        ConfigError: ``held_out`` is not a known mode.
    """
    kind = _pick(rng, CROSSMODAL_KINDS)
    want_yes = bool(rng.random() < 0.5)
    counts = range(1, MAX_OBJECTS + 1)
    colour = None
    if kind in ("equal", "more", "more_beeps"):
        pairs = tuple((n, b) for n in counts for b in range(1, MAX_BEEPS + 1) if _count_answer(kind, n, b) == want_yes)
        n, beeps = _pick(rng, pairs)
        objects = sample_image_scene(rng, held_out=held_out, count=n)["objects"]
    elif kind == "colour_equal":
        objects = sample_image_scene(rng, held_out=held_out)["objects"]
        present = tuple(dict.fromkeys(o["colour"] for o in objects))
        if want_yes or rng.random() < 0.5:
            colour = _pick(rng, present)
        else:
            colour = _pick(rng, tuple(c for c in COLOURS if c not in present))  # 6 colours > 4 shapes
        c = colour_count(objects, colour)
        beeps = c if want_yes else _pick(rng, tuple(b for b in range(1, MAX_BEEPS + 1) if b != c))
    else:
        objects = sample_image_scene(rng, held_out=held_out)["objects"]
        beeps = int(rng.integers(1, MAX_BEEPS + 1))
    audio = sample_audio_scene(rng, held_out=held_out, beeps=beeps)
    return {"image": objects, "audio": audio, "crossmodal": {"kind": kind, "colour": colour}}
