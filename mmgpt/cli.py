"""The ``mmgpt`` command line.

    mmgpt quickstart                         train the default model on ShapesTones and show it
    mmgpt data shapestones|check|inspect     generate, validate and look at data
    mmgpt train CONFIG [key=value ...]       run a training stage from a YAML recipe
    mmgpt eval CHECKPOINT --data FILE        evaluate
    mmgpt caption CHECKPOINT --image/--audio caption files, one line each
    mmgpt chat CHECKPOINT                    chat in the terminal
    mmgpt demo [CHECKPOINT]                  start the gradio demo
    mmgpt bench                              benchmarks against transformers' Llava

Each subcommand's code lives with its feature; this module only parses arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from mmgpt.errors import MMGPTError

DEFAULT_CHECKPOINT = "runs/quickstart/final"
HELP = {
    "quickstart": "train the default model on ShapesTones and show what it learned",
    "data": "generate (shapestones), validate (check) and look at (inspect) datasets",
    "train": "run a training stage from a YAML recipe with key=value overrides",
    "eval": "evaluate a model zero- or few-shot and write reports",
    "caption": "caption image and audio files, one line each",
    "chat": "chat with a model in the terminal (/image PATH, /audio PATH)",
    "demo": "start the gradio demo in the browser",
    "bench": "benchmark against transformers' Llava at the same size",
}
_COMMANDS: dict[str, Callable[[argparse.ArgumentParser], None]] = {}


def command(name: str):
    def register(fn):
        _COMMANDS[name] = fn
        return fn

    return register


def _checkpoint_arg(p: argparse.ArgumentParser, optional: bool = False) -> None:
    if optional:
        p.add_argument("checkpoint", nargs="?", default=DEFAULT_CHECKPOINT,
                       help=f"model directory (default {DEFAULT_CHECKPOINT})")
    else:
        p.add_argument("checkpoint", help="model directory written by training or save_pretrained")


def load_checkpoint(path: str):
    """Load a model for a CLI command, with a message that says how to make one if it is missing."""
    from mmgpt.errors import CheckpointError
    from mmgpt.model import load

    if not Path(path).exists():
        hint = " Run `make quickstart` (or `mmgpt quickstart`) to train it." if path == DEFAULT_CHECKPOINT else ""
        raise CheckpointError(f"no model at {path}.{hint}")
    return load(path).eval()


@command("caption")
def _caption(p: argparse.ArgumentParser) -> None:
    p.description = "Caption images and audio clips with a trained model; prints one line per file."
    _checkpoint_arg(p)
    p.add_argument("--image", nargs="+", default=[], metavar="PATH", help="image files")
    p.add_argument("--audio", nargs="+", default=[], metavar="PATH", help="audio files (any rate; mixed to mono)")
    p.add_argument("--prompt", default=None, help="instruction (default 'Describe the image.' / 'Describe the sound.')")
    p.add_argument("--max-new-tokens", type=int, default=64)

    def run(a: argparse.Namespace) -> int:
        if not a.image and not a.audio:
            p.error("give --image and/or --audio files")
        model = load_checkpoint(a.checkpoint)
        status = 0
        for kind, paths in (("image", a.image), ("audio", a.audio)):
            for path in paths:
                try:
                    text = model.caption(**{kind: path}, prompt=a.prompt, max_new_tokens=a.max_new_tokens)
                    print(f"{path}\t{' '.join(text.split())}")  # one line per file, always
                except MMGPTError as e:  # one bad file does not stop the others
                    print(f"{path}\tERROR: {e}", file=sys.stderr)
                    status = 1
        return status

    p.set_defaults(run=run)


@command("data")
def _data(p: argparse.ArgumentParser) -> None:
    p.description = "Generate, check and inspect datasets."
    sub = p.add_subparsers(dest="data_command", required=True)
    g = sub.add_parser("shapestones", help="generate the ShapesTones world (PNG + WAV + JSONL per split)")
    g.add_argument("--out", required=True, help="output folder")
    g.add_argument("--train", type=int, default=20_000, help="training samples (JSONL lines)")
    g.add_argument("--val", type=int, default=1_000)
    g.add_argument("--test", type=int, default=2_000)
    g.add_argument("--gen", type=int, default=1_000, help="generalisation split with held-out attribute combinations")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--image-size", type=int, default=64)
    g.add_argument("--no-noise", action="store_true", help="no pixel or audio noise")

    def run_gen(a: argparse.Namespace) -> int:
        from mmgpt.datasets.shapestones import generate

        info = generate(a.out, train=a.train, val=a.val, test=a.test, gen=a.gen, seed=a.seed,
                        image_size=a.image_size, noise=not a.no_noise)
        for split, s in info["splits"].items():
            print(f"{split:>5}: {s['samples']:>6} samples from {s['scenes']:>5} scenes -> {s['path']}")
        print(f"done in {info['seconds']:.1f} s")
        return 0

    g.set_defaults(run=run_gen)
    try:
        from mmgpt.datasets.check import add_cli
    except ImportError:
        return
    add_cli(sub)


def _not_yet(name: str):
    def add(p: argparse.ArgumentParser) -> None:
        p.description = f"`mmgpt {name}` is not available yet in this version."
        p.set_defaults(run=lambda a: (print(f"mmgpt {name}: not yet available"), 2)[1])

    return add


def _register_optional() -> None:
    """Subcommands whose modules may not exist yet register through their own add_cli."""
    from importlib import import_module

    for name, module in (("train", "mmgpt.train.cli"), ("quickstart", "mmgpt.quickstart"),
                         ("eval", "mmgpt.eval.cli"), ("chat", "mmgpt.chat"), ("demo", "mmgpt.demo.cli"),
                         ("bench", "mmgpt.bench.cli")):
        try:
            _COMMANDS[name] = import_module(module).add_cli
        except ImportError:
            _COMMANDS.setdefault(name, _not_yet(name))


def build_parser() -> argparse.ArgumentParser:
    _register_optional()
    parser = argparse.ArgumentParser(prog="mmgpt", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.split("\n\n")[1].splitlines()))
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in HELP.items():
        p = sub.add_parser(name, help=text)
        _COMMANDS[name](p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.run(args) or 0)
    except MMGPTError as e:
        print(f"mmgpt {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
