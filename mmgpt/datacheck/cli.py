"""``mmgpt data``: generate ShapesTones, check a dataset, look at its first samples.

    mmgpt data shapestones --out data/shapestones      generate the built-in world
    mmgpt data check FILE [--model DIR | --config YAML]  every row parsed, decoded, counted; exit 1 on errors
    mmgpt data inspect FILE                            the first samples as the model sees them
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mmgpt.datacheck.check import check_dataset
from mmgpt.datacheck.inspection import inspect_dataset
from mmgpt.datasets.readers import find_datasets, read_samples

DEFAULT_PRESET = "quickstart"  # the shipped preset the processor comes from without --model / --config


def load_processor(model: str | None = None, config: str | None = None):
    """The processor of a checkpoint (``model``), or of a model preset built with random weights.

    Args:
        model: an mmgpt checkpoint directory.
        config: a model preset (YAML path or shipped name); default the quickstart preset when
            ``model`` is None.

    Returns:
        The :class:`mmgpt.processor.Processor`.

    Raises:
        CheckpointError: the checkpoint is missing or damaged.
        ConfigError: the preset is missing or invalid.
    """
    from mmgpt.config import MMGPTConfig
    from mmgpt.model import MMGPT, load

    if model is not None:
        return load(model).processor
    return MMGPT(MMGPTConfig.from_yaml(config or DEFAULT_PRESET), load_weights=False).processor


def _targets(path: str, format: str) -> list[tuple[str | Path, str | None, str | None]]:
    """What ``mmgpt data check PATH`` checks: each dataset file of a folder, else the file or glob."""
    if Path(path).is_dir():
        return find_datasets(path)
    read_samples(path, format)  # the format of the whole glob, or a clear error
    return [(path, format, None)]


def _common(p: argparse.ArgumentParser, folder: bool = False) -> None:
    what = "data file, glob" + (", or a folder of data files (each checked)" if folder else "")
    p.add_argument("path", metavar="PATH", help=f"{what} (.jsonl, LLaVA/COCO .json, .csv, .tar)")
    p.add_argument("--media-folder", default=None, metavar="DIR",
                   help="the folder the rows' media paths are relative to (COCO train2017/, Clotho development/; "
                        "default each data file's own folder); paths outside it are errors")
    p.add_argument("--allow-outside-media-folder", action="store_true",
                   help="accept media paths that are absolute or leave --media-folder with '..'")
    p.add_argument("--format", default="auto", help="reader: auto (default), jsonl, llava, coco, audio_captions, "
                                                    "webdataset")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", metavar="CHECKPOINT_DIR", help="tokenize with this trained model")
    which.add_argument("--config", metavar="YAML", help=f"tokenize with this model preset (default {DEFAULT_PRESET})")
    p.add_argument("--max-length", type=int, default=None, help="context budget (default the model's)")
    p.add_argument("--allow-no-targets", action="store_true",
                   help="a sample with nothing trained is a warning, not an error")


def add_cli(p: argparse.ArgumentParser) -> None:
    """The ``mmgpt data`` command: ``shapestones``, ``check`` and ``inspect`` subcommands."""
    p.description = "Generate, check and inspect datasets."
    sub = p.add_subparsers(dest="data_command", required=True)
    _add_shapestones(sub)
    c = sub.add_parser("check", help="validate every row: parsing, media, token counts, targets; exit 1 on errors",
                       description="Read every row, decode every media file, run the processor, and report "
                                   "problems by kind with statistics. Exit code 1 when any error was found.")
    _common(c, folder=True)
    c.add_argument("--limit", type=int, default=None, metavar="N", help="stop after N rows (per file)")
    c.add_argument("--max-image-pixels", type=int, default=None, help="image size cap (default the model's)")
    c.add_argument("--max-audio-seconds", type=float, default=None, help="clip length cap (default the model's)")
    c.add_argument("--json", metavar="FILE", default=None, help="also write the report as JSON")

    def run_check(a: argparse.Namespace) -> int:
        files = _targets(a.path, a.format)  # a bad path or format fails before the model is built
        processor = load_processor(a.model, a.config)
        print(f"model        {a.model or a.config or DEFAULT_PRESET} (its tokenizer and processor)")
        reports = []
        for path, fmt, why in files:
            if fmt is None:
                print(f"\nnot a dataset: {path} ({why})")
                continue
            report = check_dataset(path, processor, format=fmt, limit=a.limit, allow_no_targets=a.allow_no_targets,
                                   max_length=a.max_length, max_image_pixels=a.max_image_pixels,
                                   max_audio_seconds=a.max_audio_seconds, progress=True, media_folder=a.media_folder,
                                   allow_outside_media_folder=a.allow_outside_media_folder)
            print(("\n" if len(files) > 1 else "") + report.format())
            reports.append(report)
        if len(files) > 1:
            failed = [r.path for r in reports if not r.ok]
            print(f"\n{len(reports)} dataset files checked, {len(failed)} failed{': ' if failed else ''}"
                  + ", ".join(failed))
        if a.json:
            data = reports[0].to_dict() if len(files) == 1 else {"files": [r.to_dict() for r in reports],
                                                                 "ok": all(r.ok for r in reports)}
            Path(a.json).write_text(json.dumps(data, indent=2) + "\n")
        return 0 if reports and all(r.ok for r in reports) else 1

    c.set_defaults(run=run_check)
    i = sub.add_parser("inspect", help="print the first samples' tokens, trained ones in [[...]]",
                       description="Print the first samples as the model sees them: decoded tokens, trained "
                                   "spans in [[...]], media pad runs collapsed. Exit code 1 when a shown sample "
                                   "fails or has nothing trained.")
    _common(i)
    i.add_argument("--n", type=int, default=3, help="samples to show (default 3)")
    i.add_argument("--no-color", action="store_true", help="no ANSI colour (off anyway when stdout is not a TTY)")

    def run_inspect(a: argparse.Namespace) -> int:
        read_samples(a.path, a.format)
        color = not a.no_color and sys.stdout.isatty() and "NO_COLOR" not in os.environ
        return inspect_dataset(a.path, load_processor(a.model, a.config), n=a.n, format=a.format,
                               max_length=a.max_length, allow_no_targets=a.allow_no_targets, color=color,
                               media_folder=a.media_folder, allow_outside_media_folder=a.allow_outside_media_folder)

    i.set_defaults(run=run_inspect)


def _add_shapestones(sub) -> None:
    g = sub.add_parser("shapestones", help="generate the ShapesTones world (PNG + WAV + JSONL per split)")
    g.add_argument("--out", required=True, help="output folder")
    g.add_argument("--train", type=int, default=20_000, help="training samples (JSONL lines)")
    g.add_argument("--val", type=int, default=1_000)
    g.add_argument("--test", type=int, default=2_000)
    g.add_argument("--gen", type=int, default=1_000, help="generalisation split with held-out attribute combinations")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--image-size", type=int, default=64)
    g.add_argument("--no-noise", action="store_true", help="no pixel or audio noise")
    g.add_argument("--layout", choices=["jsonl", "coco", "clotho"], default="jsonl",
                   help="jsonl: every task as mmgpt's JSONL (default); coco: image captions as COCO "
                        "(annotations/captions_<split>.json + <split>/*.png); clotho: audio captions as Clotho "
                        "(clotho_captions_<split>.csv + <split>/*.wav; splits development, validation, evaluation)")

    def run_gen(a: argparse.Namespace) -> int:
        from mmgpt.datasets.shapestones import generate, write_clotho, write_coco

        if a.layout != "jsonl":
            if a.layout == "coco":
                done = write_coco(a.out, {"train": a.train, "val": a.val, "test": a.test}, seed=a.seed,
                                  image_size=a.image_size, noise=not a.no_noise)
            else:
                done = write_clotho(a.out, {"development": a.train, "validation": a.val, "evaluation": a.test},
                                    seed=a.seed, noise=not a.no_noise)
            for split, info in done.items():
                files = info.get("annotations") or info["captions"]
                print(f"{split:>11}: {info['items']:>6} items -> {files}, media in {info['media_folder']}")
            return 0
        info = generate(a.out, train=a.train, val=a.val, test=a.test, gen=a.gen, seed=a.seed,
                        image_size=a.image_size, noise=not a.no_noise)
        for split, s in info["splits"].items():
            print(f"{split:>5}: {s['samples']:>6} samples from {s['scenes']:>5} scenes -> {s['path']}")
        print(f"done in {info['seconds']:.1f} s")
        return 0

    g.set_defaults(run=run_gen)
