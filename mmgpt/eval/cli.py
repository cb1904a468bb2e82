"""``mmgpt eval``: evaluate a checkpoint and print the tables.

    mmgpt eval runs/quickstart/final --data data/shapestones/test.jsonl --shots 0,2
    mmgpt eval my-model --data annotations/captions_val2017.json --media-folder val2017 --limit 500
    mmgpt eval my-model --data clotho_eval.csv --tasks audio_caption    # audio-caption CSV

Reports go to ``<run folder>/eval`` (``runs/quickstart/final`` -> ``runs/quickstart/eval``)
unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmgpt.eval.tasks import TASKS as TASK_NAMES


def _csv(kind):
    def parse(text: str):
        try:
            return tuple(kind(x.strip()) for x in text.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None

    return parse


def default_out(checkpoint: str | Path) -> Path:
    """``<checkpoint's parent run folder>/eval``."""
    return Path(checkpoint).absolute().parent / "eval"


def add_cli(p: argparse.ArgumentParser) -> None:
    """Add ``mmgpt eval``'s arguments to ``p`` and set ``run``."""
    p.description = "Evaluate a model zero- or few-shot on captions, QA, cross-modal QA and chats; write reports."
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = __doc__.split("\n\n")[1]
    p.add_argument("checkpoint", help="model directory (runs/<name>/final or a save_pretrained folder)")
    p.add_argument("--data", required=True, nargs="+", metavar="PATH",
                   help="data file(s) or glob(s): native JSONL, LLaVA JSON, COCO captions JSON, caption CSV, tar")
    p.add_argument("--media-folder", default=None, metavar="DIR",
                   help="folder of the images / clips named in a COCO JSON or caption CSV (default: next to it)")
    p.add_argument("--tasks", type=_csv(str), default=None, metavar="T1,T2",
                   help=f"tasks to evaluate (default: all found); any of {', '.join(TASK_NAMES)}")
    p.add_argument("--shots", type=_csv(int), default=(0,), metavar="K1,K2",
                   help="in-context examples per query, e.g. 0,2,4 (default 0)")
    p.add_argument("--select", choices=("random", "similar"), default="random",
                   help="how examples are chosen: seeded random, or nearest by encoder features (RICES)")
    p.add_argument("--support", nargs="+", default=None, metavar="PATH",
                   help="where examples come from (default: the --data itself, minus the query)")
    p.add_argument("--format", choices=("chat", "completion"), default="chat",
                   help="chat template (instruction-tuned) or plain completion (base model)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="at most N items per task")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=None, help="default 8 for QA, 64 for captions and chats")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="autocast of the forward passes: auto (the faster here, measured; what training and the "
                        "quickstart's evaluation use), bf16 or fp32")
    p.add_argument("--out", default=None, metavar="DIR", help="report folder (default <run folder>/eval)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    def run(a: argparse.Namespace) -> int:
        from mmgpt.cli.common import load_checkpoint
        from mmgpt.eval.harness import evaluate

        if a.tasks:
            unknown = sorted(set(a.tasks) - set(TASK_NAMES))
            if unknown:
                p.error(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASK_NAMES)}")
        model = load_checkpoint(a.checkpoint)
        out = Path(a.out) if a.out else default_out(a.checkpoint)
        data = a.data[0] if len(a.data) == 1 else a.data
        support = None if a.support is None else (a.support[0] if len(a.support) == 1 else a.support)
        import torch

        from mmgpt.precision import model_widths, resolve_precision

        amp = resolve_precision(a.precision, model.device, tokens=a.batch_size * 64, **model_widths(model))
        with torch.autocast(model.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            result = evaluate(model, data, tasks=a.tasks, shots=a.shots, select=a.select, limit=a.limit,
                              batch_size=a.batch_size, max_new_tokens=a.max_new_tokens, seed=a.seed, out_dir=out,
                              progress=not a.no_progress, support=support, format=a.format, name=a.checkpoint,
                              media_folder=a.media_folder)
        print(result.table())
        print(f"\nreports: {out}/ (report.md, " + ", ".join(f.name for f in result.files if f.name != "report.md") + ")")
        return 0

    p.set_defaults(run=run)
