"""ShapesTones captions in the layouts real datasets ship in, for trying mmgpt as a new user would.

COCO (images; one caption file per split beside an image folder per split)::

    out/annotations/captions_train.json     {"images": [{"id", "file_name", "width", "height"}],
    out/annotations/captions_val.json        "annotations": [{"id", "image_id", "caption"}]}
    out/train/000000.png ...                 (file_name is relative to out/<split>/)

Clotho (clips; a CSV per split beside a folder of clips per split)::

    out/clotho_captions_development.csv     file_name,caption_1,...,caption_5
    out/development/000000.wav ...           (file_name is relative to out/<split>/)

Clotho's splits are named ``development``, ``validation`` and ``evaluation``. Every item has the
scene's canonical caption (Clotho's five caption columns hold it five times, as the layout
has five). Scenes are drawn as in :mod:`.generate`, from their own seed streams, so these files
are deterministic per seed and never share a scene with the JSONL splits of the same seed.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from mmgpt.errors import ConfigError

from .draw import render_image
from .text import audio_caption, image_caption
from .tones import SAMPLE_RATE, render_audio
from .world import sample_scene

COCO_SPLITS = ("train", "val", "test")
CLOTHO_SPLITS = ("development", "validation", "evaluation")
STREAM = 1000  # spawn keys 1000+ : the layouts' own scenes, apart from generate()'s


def _scenes(seed: int, split_index: int, n: int, progress: bool, desc: str):
    for i in tqdm(range(n), desc=desc, unit="item", disable=not progress):
        ss = np.random.SeedSequence(seed, spawn_key=(STREAM + split_index, i))
        world_rng, media_rng = (np.random.default_rng(s) for s in ss.spawn(2))
        yield i, sample_scene(world_rng), media_rng


def _counts(splits: dict[str, int], allowed: tuple[str, ...]) -> dict[str, int]:
    for name, n in splits.items():
        if name not in allowed:
            raise ConfigError(f"split {name!r} is not one of {', '.join(allowed)}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"split {name}: count must be an int >= 0, got {n!r}")
    return {k: v for k, v in splits.items() if v > 0}


def write_coco(out: str | Path, splits: dict[str, int], *, seed: int = 0, image_size: int = 64,
               noise: bool = True, progress: bool = True) -> dict[str, Any]:
    """Write ShapesTones image captions in the COCO layout (see the module docstring).

    Args:
        out: the dataset folder (created).
        splits: images per split, e.g. ``{"train": 2000, "val": 200, "test": 200}``.
        seed: the scenes' seed.
        image_size: image side in pixels.
        noise: mild pixel noise.
        progress: a progress bar per split.

    Returns:
        split -> ``{"annotations": path, "media_folder": path, "items": n}``.

    Raises:
        ConfigError: an unknown split name or a bad count.
    """
    out = Path(out)
    written = {}
    for name, n in _counts(splits, COCO_SPLITS).items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i, scene, rng in _scenes(seed, COCO_SPLITS.index(name), n, progress, f"coco {name}"):
            file_name = f"{i:06d}.png"
            render_image(scene["image"], rng, image_size, noise).save(folder / file_name, format="PNG")
            images.append({"id": i, "file_name": file_name, "width": image_size, "height": image_size})
            annotations.append({"id": i, "image_id": i, "caption": image_caption(scene["image"])})
        path = out / "annotations" / f"captions_{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"info": {"description": f"ShapesTones captions, seed {seed}"},
                                    "images": images, "annotations": annotations}))
        written[name] = {"annotations": str(path), "media_folder": str(folder), "items": n}
    return written


def write_clotho(out: str | Path, splits: dict[str, int], *, seed: int = 0, noise: bool = True,
                 progress: bool = True) -> dict[str, Any]:
    """Write ShapesTones audio captions in the Clotho layout (see the module docstring).

    Args:
        out: the dataset folder (created).
        splits: clips per split, e.g. ``{"development": 2000, "validation": 200, "evaluation": 200}``.
        seed: the scenes' seed.
        noise: faint white noise on the clips.
        progress: a progress bar per split.

    Returns:
        split -> ``{"captions": csv path, "media_folder": path, "items": n}``.

    Raises:
        ConfigError: an unknown split name or a bad count.
    """
    out = Path(out)
    written = {}
    for name, n in _counts(splits, CLOTHO_SPLITS).items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        path = out / f"clotho_captions_{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            rows = csv.writer(f)
            rows.writerow(["file_name", *(f"caption_{k}" for k in range(1, 6))])
            for i, scene, rng in _scenes(seed, CLOTHO_SPLITS.index(name), n, progress, f"clotho {name}"):
                file_name = f"{i:06d}.wav"
                sf.write(folder / file_name, render_audio(scene["audio"], rng, noise), SAMPLE_RATE,
                         subtype="PCM_16", format="WAV")
                rows.writerow([file_name, *[audio_caption(scene["audio"])] * 5])
        written[name] = {"captions": str(path), "media_folder": str(folder), "items": n}
    return written
