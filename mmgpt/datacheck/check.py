"""Preflight of datasets: ``mmgpt data check``.

:func:`check_dataset` reads every row of a dataset (any format :func:`read_samples` detects),
decodes its media and runs a model's processor on it, and returns a :class:`CheckReport`:
problems counted by kind with the first messages of each (naming ``file:line``), token,
trained-token, media and task statistics. Problem kinds:

* ``parse``: the reader could not parse the row (bad JSON, bad schema...).
* ``media``: an image or clip is missing, corrupt, or over the size caps.
* ``overflow``: media and chat markers alone exceed the context.
* ``placeholders``: media pad / start / end tokens disagree with the media (a bug if ever).
* ``no_targets``: nothing but end markers is trained on, the silent template mismatch of
  LLaVA-style training (a warning with ``allow_no_targets``).
* ``data``: any other ``DataError`` (an image for a model without a vision encoder...).
* ``trimmed`` (a warning, the rest are errors): text dropped from the left to fit the context.

``mmgpt data inspect`` lives in :mod:`mmgpt.datacheck.inspection`; both commands are added here.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mmgpt.datasets.readers import read_samples
from mmgpt.errors import ContextOverflowError, DataError, InvalidMediaError

ERROR_KINDS = ("parse", "media", "overflow", "placeholders", "no_targets", "data")
MAX_EXAMPLES = 5  # messages kept per problem kind


def _summary(values: list[float]) -> dict[str, float]:
    """min / mean / p50 / p95 / max of ``values`` ({} when empty)."""
    if not values:
        return {}
    a = np.asarray(values, dtype=np.float64)
    return {"min": float(a.min()), "mean": float(a.mean()), "p50": float(np.percentile(a, 50)),
            "p95": float(np.percentile(a, 95)), "max": float(a.max())}


@dataclass
class CheckReport:
    """What :func:`check_dataset` found. Statistics ({min, mean, p50, p95, max}) cover the samples
    the processor encoded; ``images`` / ``audios`` map k to the number of samples with k items."""

    path: str  # the file or glob checked
    rows: int = 0  # rows read: samples + rows that failed to parse
    samples: int = 0  # rows parsed into a sample
    samples_ok: int = 0  # samples without an error (warnings allowed)
    errors: dict[str, int] = field(default_factory=dict)  # count per error kind, zeros included
    warnings: dict[str, int] = field(default_factory=dict)  # count per warning kind
    examples: dict[str, list[str]] = field(default_factory=dict)  # first MAX_EXAMPLES messages per kind
    tokens: dict[str, float] = field(default_factory=dict)  # tokens per sample
    targets: dict[str, float] = field(default_factory=dict)  # trained tokens (label != -100) per sample
    images: dict[int, int] = field(default_factory=dict)
    audios: dict[int, int] = field(default_factory=dict)
    audio_seconds: dict[str, float] = field(default_factory=dict)  # duration per clip
    tasks: dict[str, int] = field(default_factory=dict)  # samples per meta["task"], when rows have one
    max_length: int = 0  # the context budget used
    seconds: float = 0.0  # wall time

    @property
    def ok(self) -> bool:
        """True when no error kind has a count (warnings do not count)."""
        return not any(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}

    def format(self) -> str:
        """A readable multi-line report."""
        def stats(s: dict[str, float], unit: str = "", digits: int = 1) -> str:
            num = [f"{v:.0f}" if v.is_integer() and not unit else f"{v:.{digits}f}" for v in s.values()]
            return "  ".join(f"{k} {v}{unit}" for k, v in zip(s, num)) or "-"

        def hist(h: dict[int, int]) -> str:
            return "  ".join(f"{k}: {v}" for k, v in sorted(h.items())) or "-"

        lines = [f"dataset      {self.path}", f"rows read    {self.rows}",
                 f"samples ok   {self.samples_ok} / {self.samples}", "problems"]
        for kinds, severity in ((self.errors, "error"), (self.warnings, "warning")):
            for kind, n in kinds.items():
                lines.append(f"  {kind:<13}{n:>7}  ({severity})")
                lines += [f"      {m}" for m in self.examples.get(kind, [])]
                if n > len(self.examples.get(kind, [])):
                    lines.append(f"      ... and {n - len(self.examples.get(kind, []))} more")
        lines += [
            f"tokens       {stats(self.tokens)}   (max_length {self.max_length})",
            f"trained      {stats(self.targets)}",
            f"images/smp   {hist(self.images)}",
            f"audio/smp    {hist(self.audios)}",
            f"audio secs   {stats(self.audio_seconds, ' s', 2)}",
        ]
        if self.tasks:
            lines.append("tasks        " + ", ".join(f"{t} {n}" for t, n in sorted(self.tasks.items())))
        failed = [k for k, n in self.errors.items() if n]
        verdict = "OK" if self.ok else f"FAILED ({', '.join(failed)})"
        lines.append(f"{verdict} in {self.seconds:.1f} s")
        return "\n".join(lines)


@contextmanager
def _quiet(*names: str):
    """Silence per-row warnings of these loggers: the report lists those rows itself."""
    loggers = {logging.getLogger(n): logging.getLogger(n).level for n in names}
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        yield
    finally:
        for lg, level in loggers.items():
            lg.setLevel(level)


def _located(source: str, error: Exception) -> str:
    message = str(error)
    return message if message.startswith(source) else f"{source}: {message}"


def content_targets(enc, processor) -> int:
    """Trained tokens other than the ``<|im_end|>`` / ``<|endoftext|>`` end markers.

    An assistant turn with empty text still trains its ``<|im_end|>``; such a sample teaches
    only "stop", which is what a template mismatch looks like, so it counts as no targets.
    """
    from mmgpt.processor import IGNORE
    from mmgpt.tokenizer import EOS, IM_END

    ends = [processor.ids[IM_END], processor.ids[EOS]]
    labels = enc.labels
    return int(((labels != IGNORE) & ~np.isin(labels.numpy(), ends)).sum())


def placeholder_mismatch(enc, sample, processor) -> str | None:
    """Why the media tokens of ``enc`` disagree with ``sample``'s media, or None if they agree."""
    from mmgpt.tokenizer import MEDIA_TOKENS

    ids = enc.input_ids
    for modality, (start, pad, end) in MEDIA_TOKENS.items():
        items = sum(1 for _ in sample.media(modality))
        decoded = enc.media.get(modality, [])
        want = sum(processor.num_media_tokens(modality, it.values.shape[-1]) for it in decoded)
        counts = [int((ids == processor.ids[t]).sum()) for t in (start, pad, end)]
        if len(decoded) != items or counts != [items, want, items]:
            return (f"{items} {modality} items ({len(decoded)} decoded) need {items} {start}, "
                    f"{want} {pad}, {items} {end}; the ids hold {counts[0]}, {counts[1]}, {counts[2]}")
    return None


class _Tally:
    """Problems and statistics gathered while :func:`check_dataset` reads."""

    def __init__(self, report: CheckReport, processor, max_length: int | None) -> None:
        self.report, self.proc, self.max_length = report, processor, max_length
        self.lengths, self.targets, self.seconds = [], [], []
        self.images, self.audios, self.tasks = Counter(), Counter(), Counter()

    def problem(self, kind: str, message: str) -> bool:
        """Count one problem and keep its message; True when ``kind`` is an error."""
        counts = self.report.warnings if kind in self.report.warnings else self.report.errors
        counts[kind] += 1
        kept = self.report.examples.setdefault(kind, [])
        if len(kept) < MAX_EXAMPLES:
            kept.append(message)
        return counts is self.report.errors

    def add(self, sample) -> None:
        self.report.samples += 1
        if isinstance(sample.meta.get("task"), str):
            self.tasks[sample.meta["task"]] += 1
        self.report.samples_ok += not self._check(sample)

    def _check(self, sample) -> bool:
        """Process one sample and record what is wrong with it; True when it has an error."""
        from mmgpt.datasets.media import SAMPLE_RATE  # lazy: torch is slow to import for `mmgpt --help`

        where = sample.source
        try:
            enc = self.proc(sample, max_length=self.max_length)
        except InvalidMediaError as e:
            return self.problem("media", _located(where, e))
        except ContextOverflowError as e:
            return self.problem("overflow", _located(where, e))
        except DataError as e:
            return self.problem("data", _located(where, e))
        self.lengths.append(len(enc))
        self.targets.append(enc.num_targets)
        images, clips = enc.media.get("image", []), enc.media.get("audio", [])
        self.images[len(images)] += 1
        self.audios[len(clips)] += 1
        self.seconds.extend(c.values.shape[-1] / SAMPLE_RATE for c in clips)  # the processor's output rate
        bad = False
        if enc.trimmed:
            self.problem("trimmed", f"{where}: {enc.trimmed} text tokens dropped from the left to fit "
                                    f"max_length {self.report.max_length}")
        if (why := placeholder_mismatch(enc, sample, self.proc)) is not None:
            bad |= self.problem("placeholders", f"{where}: {why}")
        if content_targets(enc, self.proc) == 0:
            bad |= self.problem("no_targets", f"{where}: nothing trained but end markers ({enc.num_targets} "
                                              "trained tokens); does every chat end with a non-empty assistant turn?")
        return bad

    def finish(self, reader, started: float) -> CheckReport:
        r = self.report
        r.rows = reader.stats.samples + reader.stats.skipped
        r.errors["parse"] = reader.stats.skipped
        if reader.stats.errors:
            r.examples["parse"] = reader.stats.errors[:MAX_EXAMPLES]
        r.tokens, r.targets, r.audio_seconds = _summary(self.lengths), _summary(self.targets), _summary(self.seconds)
        r.images, r.audios = dict(sorted(self.images.items())), dict(sorted(self.audios.items()))
        r.tasks = dict(sorted(self.tasks.items()))
        r.seconds = time.perf_counter() - started
        return r


def check_dataset(
    path: str | Path, processor, *, format: str = "auto", limit: int | None = None,
    allow_no_targets: bool = False, max_length: int | None = None, max_image_pixels: int | None = None,
    max_audio_seconds: float | None = None, progress: bool = False, media_folder: str | Path | None = None,
    allow_outside_media_folder: bool = False,
) -> CheckReport:
    """Read, decode and process every row of a dataset and count what is wrong.

    Args:
        path: a data file or glob.
        processor: the :class:`mmgpt.processor.Processor` of the model to train (not modified).
        format: a :func:`read_samples` format, or ``"auto"``.
        limit: stop once this many rows are read.
        allow_no_targets: count samples without trained content as a warning, not an error.
        max_length: context budget; default the processor's model's ``max_length``.
        max_image_pixels: image size cap; default the processor's.
        max_audio_seconds: clip length cap; default the processor's.
        progress: show a progress bar on stderr.
        media_folder: the folder the rows' media paths are relative to (default each data
            file's own folder); a path outside it is a ``parse`` error unless
            ``allow_outside_media_folder``.

    Returns:
        The :class:`CheckReport`; ``report.ok`` is False when any error kind has a count.

    Raises:
        DataError: the path names no file, or the format is unknown or cannot be detected.
    """
    started = time.perf_counter()
    proc = processor
    caps = {m: v for m, v in (("image", max_image_pixels), ("audio", max_audio_seconds)) if v is not None}
    if caps:
        proc = copy.copy(processor)  # the caller's processor keeps its caps
        proc.limits = {**processor.limits, **caps}
    warn_kinds = ("trimmed", "no_targets") if allow_no_targets else ("trimmed",)
    report = CheckReport(str(path), max_length=max_length or proc.config.max_length,
                         errors={k: 0 for k in ERROR_KINDS if k not in warn_kinds},
                         warnings={k: 0 for k in warn_kinds})
    tally = _Tally(report, proc, max_length)
    reader = read_samples(path, format, on_error="skip", media_folder=media_folder,
                          allow_outside_media_folder=allow_outside_media_folder)
    samples = iter(reader)
    bar = tqdm(total=limit, desc="check", unit="row", disable=None if progress else True,
               file=sys.stderr)  # None: off when stderr is not a terminal
    try:
        with _quiet("mmgpt.processor", "mmgpt.datasets.readers"):
            for sample in samples:
                rows = reader.stats.samples + reader.stats.skipped
                bar.update(rows - bar.n)
                tally.add(sample)
                if limit is not None and rows >= limit:
                    break
    finally:
        samples.close()  # closes the open file when the limit stops the pass early
        bar.close()
    return tally.finish(reader, started)
