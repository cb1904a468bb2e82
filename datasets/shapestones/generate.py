"""Write ShapesTones splits to disk: ``{train,val,test,gen}.jsonl`` plus PNG and WAV media.

Determinism: scene ``i`` of split ``s`` draws from ``SeedSequence(seed, spawn_key=(s, 0, i))``
(spawned into independent world / image / audio / text streams), and the order of a split's
lines from ``SeedSequence(seed, spawn_key=(s, 1))``; so splits never share random state, and the
same arguments give byte-identical files. Each scene (one image, one clip) is reused by about
:data:`SCENE_LINES` lines, in proportions set by the task mix.

The ``gen`` split holds the held-out combinations (:data:`.world.HELD_OUT_SHAPES`,
:data:`.world.HELD_OUT_TONES`) that train/val/test never contain.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from mmgpt.errors import ConfigError

from .draw import render_image
from .tasks import TASKS, scene_records
from .tones import SAMPLE_RATE, render_audio
from .world import HELD_OUT_SHAPES, HELD_OUT_TONES, sample_scene

SPLITS: tuple[str, ...] = ("train", "val", "test", "gen")
#: Relative weight of each task among the lines; a scene yields about SCENE_LINES lines.
DEFAULT_MIX: dict[str, float] = {
    "image_caption": 1.0,
    "audio_caption": 1.0,
    "image_qa": 2.0,
    "audio_qa": 2.0,
    "crossmodal_qa": 1.0,
    "chat": 0.5,
    "document": 0.5,
    # in-context learning (off by default; the quickstart plan turns them on): chats of 1-4
    # solved items then a query, and the invented-names task only examples can solve
    "fewshot": 0.0,
    "new_words": 0.0,
    # text documents that name sounds with invented words and use the names again: the copy that
    # new_words needs, for the text stage (stage 0a); no other stage's recipe trains on them
    "recall": 0.0,
}
SCENE_LINES = 8.0
#: tasks whose counts and text come from a random stream of their own: a dataset without them is
#: byte-identical to one made before they existed, and with them every other line is as it was
OWN_STREAM_TASKS: tuple[str, ...] = ("recall",)


def resolve_mix(mix: dict[str, float] | None, scene_lines: float = SCENE_LINES) -> dict[str, float]:
    """Expected lines per scene for each task: the defaults updated by ``mix``, scaled to
    :data:`SCENE_LINES` in total.

    Args:
        mix: task → relative weight; tasks not named keep their default weight (give 0 to
            drop a task).
        scene_lines: expected lines per scene (fewer means more distinct images and clips).

    Returns:
        task → expected lines per scene, for every task of :data:`.tasks.TASKS`.

    Raises:
        ConfigError: an unknown task, a negative or non-finite weight, or all weights zero.
    """
    weights = dict(DEFAULT_MIX)
    for task, w in (mix or {}).items():
        if task not in TASKS:
            raise ConfigError(f"mix: unknown task {task!r} (expected one of {', '.join(TASKS)})")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"mix: weight of {task!r} must be a finite number >= 0, got {w!r}")
        weights[task] = float(w)
    total = sum(weights.values())
    if total <= 0:
        raise ConfigError("mix: at least one task needs a positive weight")
    if not (isinstance(scene_lines, (int, float)) and 0 < scene_lines <= 64):
        raise ConfigError(f"scene_lines must be in (0, 64], got {scene_lines!r}")
    return {task: w * scene_lines / total for task, w in weights.items()}


def _scene_counts(per_scene: dict[str, float], rng: np.random.Generator) -> dict[str, int]:
    """Lines of each task for one scene: the expected count, randomly rounded."""
    return {task: math.floor(x) + int(rng.random() < x - math.floor(x)) for task, x in per_scene.items()}


def _dumps(record: dict) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError(f"{name} must be an int >= 0, got {value!r}")
    return int(value)


def generate_split(
    out_dir: Path, split: str, n: int, *, seed: int, image_size: int, noise: bool,
    per_scene: dict[str, float], progress: bool,
) -> dict[str, Any]:
    """Write ``out_dir/<split>.jsonl`` with ``n`` lines and its media under ``out_dir/media/<split>``.

    Args:
        out_dir: the dataset folder.
        split: one of :data:`SPLITS` (``gen`` uses the held-out combinations).
        n: number of lines.
        seed: the dataset seed.
        image_size: image side in pixels.
        noise: add pixel and audio noise.
        per_scene: expected lines per scene per task (see :func:`resolve_mix`).
        progress: show a progress bar.

    Returns:
        ``{"samples", "scenes", "tasks": {task: lines}, "path"}``.
    """
    split_index = SPLITS.index(split)
    held_out = "require" if split == "gen" else "exclude"
    media_dir = out_dir / "media" / split
    media_dir.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    tasks: Counter[str] = Counter()
    history: list[dict] = []
    shared = {t: x for t, x in per_scene.items() if t not in OWN_STREAM_TASKS}
    own = {t: x for t, x in per_scene.items() if t in OWN_STREAM_TASKS and x > 0}
    bar = tqdm(total=n, desc=f"shapestones {split}", unit="line", disable=not progress)
    while len(lines) < n:
        index = len(history)
        ss = np.random.SeedSequence(seed, spawn_key=(split_index, 0, index))
        world_rng, image_rng, audio_rng, text_rng, own_rng = (np.random.default_rng(s) for s in ss.spawn(5))
        scene = sample_scene(world_rng, held_out=held_out)
        stem = f"{index:06d}"
        render_image(scene["image"], image_rng, image_size, noise).save(media_dir / f"{stem}.png", format="PNG")
        sf.write(media_dir / f"{stem}.wav", render_audio(scene["audio"], audio_rng, noise),
                 SAMPLE_RATE, subtype="PCM_16", format="WAV")
        scene |= {"index": index, "split": split,
                  "image_path": f"media/{split}/{stem}.png", "audio_path": f"media/{split}/{stem}.wav"}
        records = scene_records(scene, _scene_counts(shared, text_rng), text_rng, history)
        if own:
            records += scene_records(scene, _scene_counts(own, own_rng), own_rng, history)
        records = records[: n - len(lines)]
        lines += [_dumps(r) for r in records]
        tasks.update(r["meta"]["task"] for r in records)
        history.append(scene)
        bar.update(len(records))
    bar.close()
    order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(split_index, 1))).permutation(n)
    path = out_dir / f"{split}.jsonl"
    path.write_text("".join(lines[i] + "\n" for i in order), encoding="utf-8")
    return {"samples": n, "scenes": len(history), "tasks": dict(sorted(tasks.items())), "path": str(path)}


def generate(
    out_dir: str | Path, *, train: int = 20_000, val: int = 1_000, test: int = 2_000, gen: int = 1_000,
    seed: int = 0, image_size: int = 64, noise: bool = True, mix: dict[str, float] | None = None,
    scene_lines: float = SCENE_LINES, progress: bool = True,
) -> dict[str, Any]:
    """Generate the ShapesTones dataset.

    Writes ``out_dir/{train,val,test,gen}.jsonl`` (a split with 0 lines is skipped) and media
    under ``out_dir/media/<split>/`` (``NNNNNN.png``, ``NNNNNN.wav`` 16-bit PCM at 16 kHz),
    with media paths in the JSONL relative to the JSONL file.

    Args:
        out_dir: folder to write into (created if missing; existing files are overwritten).
        train: lines in the training split.
        val: lines in the validation split.
        test: lines in the test split.
        gen: lines in the generalisation split (held-out attribute combinations only).
        seed: dataset seed (int >= 0); the same arguments give byte-identical files.
        image_size: image side in pixels (>= 16).
        noise: add mild pixel noise to images and faint white noise to audio.
        mix: task weights, merged into :data:`DEFAULT_MIX` (see :func:`resolve_mix`).
        scene_lines: expected lines per scene; lower gives more distinct media for the same
            number of lines (more disk, better generalisation).
        progress: show a tqdm progress bar per split.

    Returns:
        ``{"out_dir", "seed", "image_size", "noise", "mix", "held_out", "splits": {split:
        {"samples", "scenes", "tasks", "path"}}, "seconds"}``.

    Raises:
        ConfigError: a count, the seed, ``image_size`` or ``mix`` is invalid.
    """
    start = time.perf_counter()
    counts = {s: _check_count(s, v) for s, v in zip(SPLITS, (train, val, test, gen))}
    seed = _check_count("seed", seed)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 16:
        raise ConfigError(f"image_size must be an int >= 16, got {image_size!r}")
    per_scene = resolve_mix(mix, scene_lines)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = {
        split: generate_split(out, split, n, seed=seed, image_size=image_size, noise=bool(noise),
                              per_scene=per_scene, progress=progress)
        for split, n in counts.items() if n > 0
    }
    return {
        "out_dir": str(out), "seed": seed, "image_size": image_size, "noise": bool(noise),
        "mix": per_scene,
        "held_out": {"shapes": [list(p) for p in HELD_OUT_SHAPES], "tones": [list(t) for t in HELD_OUT_TONES]},
        "splits": splits, "seconds": round(time.perf_counter() - start, 3),
    }
