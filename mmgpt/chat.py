"""``mmgpt chat [CHECKPOINT]``: chat with a model in the terminal.

Type a message and press Enter; the answer streams in, and the chat keeps its history.
Between turns, commands attach media to the next message::

    /image PATH    attach an image to the next message
    /audio PATH    attach an audio clip to the next message
    /reset         forget the history and anything attached
    /help          list the commands
    /quit          leave (so do Ctrl+D and the end of piped input)

A message with only media attached and no text (just Enter after ``/image``) asks for a
caption. It reads standard input line by line, so commands can be piped in::

    printf '/image cat.png\\nWhat colour is the shape?\\n' | mmgpt chat runs/quickstart/final

Answers go to standard output, one ``mmgpt> `` line per turn; notes and errors go to
standard error. A bad file or a failed turn prints an error and the chat goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shlex
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from mmgpt.demo.session import (
    DEFAULT_MAX_AUDIO_SECONDS,
    DEFAULT_MAX_PIXELS,
    ModelRunner,
    Settings,
    user_message,
)
from mmgpt.errors import MMGPTError

HELP = __doc__.split("::")[1].split("\n\n")[1]
ANSWER_PREFIX = "mmgpt> "
# Control characters bar newline and tab: a model's output must not drive the terminal (ESC sequences).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _parse_path(arg: str) -> str:
    """A path argument: quotes allowed (for spaces), ``~`` expanded."""
    parts = shlex.split(arg) if arg.strip() else []
    if len(parts) != 1:
        raise ValueError("give one path (quote it if it has spaces)")
    return str(Path(parts[0]).expanduser())


def chat_loop(runner: ModelRunner, settings: Settings, lines: Iterable[str], out: TextIO | None = None,
              err: TextIO | None = None) -> list[dict]:
    """Run the chat over ``lines`` until ``/quit`` or their end.

    Args:
        runner: the model behind its lock and caps.
        settings: generation settings for every turn.
        lines: input lines (``sys.stdin``, a list in tests).
        out: where answers stream (default ``sys.stdout``).
        err: where notes and errors go (default ``sys.stderr``).

    Returns:
        The chat history (transformers content-list messages) at the end.
    """
    out, err = out or sys.stdout, err or sys.stderr
    history: list[dict] = []
    pending: dict[str, str] = {}

    for raw in lines:
        line = raw.strip()
        if not line and not pending:
            continue
        command, _, arg = line.partition(" ") if line.startswith("/") else ("", "", "")
        if command in ("/quit", "/exit"):
            break
        if command == "/help":
            err.write(HELP + "\n")
        elif command == "/reset":
            history.clear()
            pending.clear()
            err.write("(history cleared)\n")
        elif command in ("/image", "/audio"):
            kind = command[1:]
            try:
                path = runner.check_media(kind, _parse_path(arg))
                if kind in pending:
                    err.write(f"(replaces {pending[kind]})\n")
                pending[kind] = path
                err.write(f"({kind} attached: {path}; it goes with your next message)\n")
            except (MMGPTError, ValueError) as e:
                err.write(f"error: /{kind}: {e}\n")
        elif command:
            err.write(f"error: unknown command {command}; try /help\n")
        else:
            _turn(runner, settings, history, pending, line, out, err)
    return history


def _turn(runner: ModelRunner, settings: Settings, history: list[dict], pending: dict[str, str], text: str,
          out: TextIO, err: TextIO) -> None:
    """Answer one message, streaming; on success the exchange joins ``history``."""
    try:
        message = user_message(text, pending.get("image"), pending.get("audio"))
    except MMGPTError as e:
        err.write(f"error: {e}\n")
        return
    out.write(ANSWER_PREFIX)
    out.flush()
    pieces: list[str] = []
    try:
        for piece in runner.stream([*history, message], settings):
            piece = _CONTROL.sub("", piece)
            pieces.append(piece)
            out.write(piece)
            out.flush()
    except MMGPTError as e:
        out.write("\n")
        err.write(f"error: {e}\n")
        return
    finally:
        pending.clear()  # attached media go with this message, answered or not
    answer = "".join(pieces).strip()
    out.write("\n" if answer else "(empty answer)\n")
    out.flush()
    history += [message, {"role": "assistant", "content": [{"type": "text", "text": answer}]}]


def _terminal_lines() -> Iterator[str]:
    """Lines typed at a terminal, with line editing and history (readline) where Python has it."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 - importing it is what turns editing on for input()
    while True:
        try:
            yield input("you> ")
        except EOFError:
            print(file=sys.stderr)
            return


def add_cli(p: argparse.ArgumentParser) -> None:
    """Add the ``chat`` options to ``p`` and set its ``run`` function.

    Args:
        p: the ``mmgpt chat`` subparser.
    """
    from mmgpt.cli.common import checkpoint_arg

    p.description = "Chat with a model in the terminal; /image PATH and /audio PATH attach media. " + \
        "Reads standard input, so commands can be piped in."
    p.epilog = HELP
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    checkpoint_arg(p, optional=True)
    p.add_argument("--max-new-tokens", type=int, default=64, help="longest answer in tokens (default 64)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); above 0 samples")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus mass when sampling (default 1.0)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="largest image, width x height (default %(default)s)")
    p.add_argument("--max-audio-seconds", type=float, default=DEFAULT_MAX_AUDIO_SECONDS,
                   help="longest clip in seconds (default %(default)s)")
    p.add_argument("--device", default=None, help="torch device (default cuda when available, else cpu)")

    def run(a: argparse.Namespace) -> int:
        import torch

        from mmgpt.cli.common import load_checkpoint

        settings = Settings(a.max_new_tokens, a.temperature, a.top_p)
        model = load_checkpoint(a.checkpoint)
        model.to(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        runner = ModelRunner(model, max_pixels=a.max_pixels, max_audio_seconds=a.max_audio_seconds)
        if sys.stdin.isatty():
            print(f"chatting with {a.checkpoint}; /help lists the commands, /quit leaves", file=sys.stderr)
            chat_loop(runner, settings, _terminal_lines())
        else:
            chat_loop(runner, settings, sys.stdin)
        return 0

    p.set_defaults(run=run)
