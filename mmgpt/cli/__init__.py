"""The ``mmgpt`` command line.

    mmgpt quickstart                         train the default model on ShapesTones and show it
    mmgpt pipeline PLAN.yaml                 every stage of a plan on your files, then evaluate
    mmgpt data shapestones|check|inspect     generate, validate and look at data
    mmgpt train CONFIG [key=value ...]       run a training stage from a YAML recipe
    mmgpt eval CHECKPOINT --data FILE        evaluate
    mmgpt caption CHECKPOINT --image/--audio caption files, one line each
    mmgpt chat CHECKPOINT                    chat in the terminal
    mmgpt demo [CHECKPOINT]                  start the gradio demo
    mmgpt serve CHECKPOINT                   an OpenAI-compatible server (/v1/chat/completions)
    mmgpt export CHECKPOINT OUT --format llava   a folder plain transformers loads
    mmgpt bench                              benchmarks against transformers' Llava
    mmgpt convert-weights IN.pth OUT         a pickled weight file you trust -> .safetensors

Each subcommand's code lives with its feature (its module's ``add_cli``); this package only
builds the parser and turns mmgpt's errors into one line. Subcommand modules are imported when
the parser is built, so ``import mmgpt.cli`` stays light.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from importlib import import_module

from mmgpt.errors import MMGPTError

# name -> (one-line help, module whose add_cli(parser) defines the subcommand)
COMMANDS = {
    "quickstart": ("train the default model on ShapesTones and show what it learned", "mmgpt.quickstart"),
    "pipeline": ("run a plan's stages on your data files, evaluate, save final/", "mmgpt.pipeline"),
    "data": ("generate (shapestones), validate (check) and look at (inspect) datasets", "mmgpt.datacheck.cli"),
    "train": ("run a training stage from a YAML recipe with key=value overrides", "mmgpt.train.cli"),
    "eval": ("evaluate a model zero- or few-shot and write reports", "mmgpt.eval.cli"),
    "caption": ("caption image and audio files, one line each", "mmgpt.cli.caption"),
    "chat": ("chat with a model in the terminal (/image PATH, /audio PATH)", "mmgpt.chat"),
    "demo": ("start the gradio demo in the browser", "mmgpt.demo.cli"),
    "serve": ("serve a model over an OpenAI-compatible HTTP API", "mmgpt.serve"),
    "export": ("export a model to a transformers format (llava)", "mmgpt.export"),
    "bench": ("benchmark against transformers' Llava at the same size", "mmgpt.bench.cli"),
    "convert-weights": ("convert a pickled weight file you trust (.pth/.bin) to .safetensors", "mmgpt.cli.convert"),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``mmgpt`` parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="mmgpt", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.split("\n\n")[1].splitlines()))
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (text, module) in COMMANDS.items():
        import_module(module).add_cli(sub.add_parser(name, help=text))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``mmgpt ARGS``; returns the exit code: 1 on an mmgpt error, 2 on any other exception,
    each printed as one line (with the traceback under ``-v``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.run(args) or 0)
    except MMGPTError as e:
        if args.verbose:
            traceback.print_exc()
        print(f"mmgpt {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, or a failure mmgpt does not name yet: one line unless -v
        if args.verbose:
            traceback.print_exc()
        print(f"mmgpt {args.command}: internal error: {type(e).__name__}: {e} (run `mmgpt -v {args.command} ...` "
              "for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
