"""``mmgpt data inspect``: the first samples of a dataset as the model sees them.

:func:`render_tokens` shows an encoded sample as text, trained spans in ``[[...]]`` and media
pad runs collapsed (``<|image_pad|>×16``); :func:`inspect_dataset` prints a dataset's first
samples that way, with a warning where nothing but end markers is trained.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

from mmgpt.datacheck.check import content_targets
from mmgpt.datasets.readers import read_samples
from mmgpt.errors import MMGPTError

_GREEN, _CYAN, _RED, _RESET = "\033[32;1m", "\033[36m", "\033[31;1m", "\033[0m"


def render_tokens(enc, processor, *, color: bool = False) -> str:
    """An encoded sample as text: trained spans in ``[[...]]``, media pad runs as ``<|image_pad|>×N``.

    Args:
        enc: an :class:`mmgpt.processor.Encoded`.
        processor: the processor that made it (for its tokenizer and special ids).
        color: also colour trained spans (green) and pad runs (cyan) with ANSI codes.

    Returns:
        The decoded sequence, special tokens included.
    """
    from mmgpt.processor import IGNORE
    from mmgpt.tokenizer import MEDIA_TOKENS

    pads = {processor.ids[pad]: pad for _, pad, _ in MEDIA_TOKENS.values()}

    def kind(pair: tuple[int, int]) -> tuple[str, int]:
        return ("pad", pair[0]) if pair[0] in pads else ("text", int(pair[1] != IGNORE))

    out = []
    for (what, key), group in itertools.groupby(zip(enc.input_ids.tolist(), enc.labels.tolist()), key=kind):
        ids = [i for i, _ in group]
        if what == "pad":
            text, style = f"{pads[key]}×{len(ids)}", _CYAN
        else:
            text = processor.tokenizer.decode(ids, skip_special_tokens=False)
            text, style = (f"[[{text}]]", _GREEN) if key else (text, "")
        out.append(f"{style}{text}{_RESET}" if color and style else text)
    return "".join(out)


def inspect_dataset(path: str | Path, processor, *, n: int = 3, format: str = "auto", max_length: int | None = None,
                    media_folder: str | Path | None = None, allow_outside_media_folder: bool = False,
                    allow_no_targets: bool = False, color: bool = False, file=None) -> int:
    """Print the first ``n`` samples of a dataset as the model sees them (see :func:`render_tokens`).

    Args:
        path, processor, format, max_length, allow_no_targets, media_folder,
        allow_outside_media_folder: as for :func:`check_dataset`.
        n: how many samples to show.
        color: ANSI colour.
        file: where to print (default stdout).

    Returns:
        0, or 1 when a shown sample failed to process, had no trained content (unless
        allowed), or a row before the last shown one failed to parse.

    Raises:
        DataError: the path names no file, or the format is unknown or cannot be detected.
    """
    file = file or sys.stdout
    red, reset = (_RED, _RESET) if color else ("", "")
    status = 0
    reader = read_samples(path, format, on_error="skip", media_folder=media_folder,
                          allow_outside_media_folder=allow_outside_media_folder)
    samples = iter(reader)
    try:
        for k, sample in enumerate(itertools.islice(samples, n), start=1):
            print(f"=== sample {k}: {sample.source}", file=file)
            meta = json.dumps(sample.meta, ensure_ascii=False, default=str)
            print(f"meta: {meta if len(meta) <= 300 else meta[:297] + '...'}", file=file)
            try:
                enc = processor(sample, max_length=max_length)
            except MMGPTError as e:
                print(f"{red}ERROR: {e}{reset}\n", file=file)
                status = 1
                continue
            trimmed = f", {enc.trimmed} text tokens trimmed from the left" if enc.trimmed else ""
            print(f"tokens: {len(enc)}, trained: {enc.num_targets}{trimmed}", file=file)
            print(render_tokens(enc, processor, color=color).removesuffix("\n"), file=file)
            if content_targets(enc, processor) == 0:
                level = "WARNING" if allow_no_targets else "ERROR"
                print(f"{red}!!! {level}: nothing trained in {sample.source} but end markers: "
                      f"check the chat template and that an assistant turn has text{reset}", file=file)
                status = status or int(not allow_no_targets)
            print(file=file)
    finally:
        samples.close()
    for message in reader.stats.errors:
        print(f"{red}skipped bad row: {message}{reset}", file=file)
    return status or int(reader.stats.skipped > 0)
