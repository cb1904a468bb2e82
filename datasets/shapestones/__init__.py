"""ShapesTones: the built-in, deterministic generated world mmgpt trains on by default.

Images of 1–4 coloured shapes in a 2×2 grid and clips of 1–4 identical beeps, with canonical
captions, image / audio / cross-modal questions, multi-turn chats and interleaved documents,
all with exact ground truth. :func:`generate` writes the splits; :func:`write_coco` and
:func:`write_clotho` write captions in the COCO and Clotho layouts; the in-memory helpers are for
tests and evaluation (``VOCAB`` lists every answer of every attribute).
"""

from .draw import render_image
from .generate import DEFAULT_MIX, SPLITS, generate, resolve_mix
from .layouts import CLOTHO_SPLITS, COCO_SPLITS, write_clotho, write_coco
from .tasks import TASKS
from .text import (
    audio_caption,
    audio_question,
    crossmodal_answer,
    crossmodal_question,
    image_caption,
    image_question,
    number_word,
)
from .tones import SAMPLE_RATE, render_audio
from .world import (
    AUDIO_ATTRIBUTES,
    COLOURS,
    HELD_OUT_SHAPES,
    HELD_OUT_TONES,
    IMAGE_ATTRIBUTES,
    VOCAB,
    sample_audio_scene,
    sample_image_scene,
    sample_scene,
)

__all__ = [
    "AUDIO_ATTRIBUTES",
    "CLOTHO_SPLITS",
    "COCO_SPLITS",
    "COLOURS",
    "DEFAULT_MIX",
    "HELD_OUT_SHAPES",
    "HELD_OUT_TONES",
    "IMAGE_ATTRIBUTES",
    "SAMPLE_RATE",
    "SPLITS",
    "TASKS",
    "VOCAB",
    "audio_caption",
    "audio_question",
    "crossmodal_answer",
    "crossmodal_question",
    "generate",
    "image_caption",
    "image_question",
    "number_word",
    "render_audio",
    "render_image",
    "resolve_mix",
    "sample_audio_scene",
    "sample_image_scene",
    "sample_scene",
    "write_clotho",
    "write_coco",
]
