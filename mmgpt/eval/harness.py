"""The evaluation harness: one entry point for every task, zero- and few-shot, model or predictor.

    data (path / glob / Samples) -> items per task (query + references, :mod:`.tasks`)
      -> per shots value k: k examples per query from the support pool (:mod:`.fewshot`)
      -> prompts, sorted by length, generated in batches (:mod:`.predict`), put back in order
      -> scores (:mod:`.scoring`) -> :class:`EvalResult` -> files (:mod:`.report`)

The same function serves the CLI (``mmgpt eval``), quickstart and the trainer (via
:class:`mmgpt.eval.hook.PeriodicEval`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from mmgpt.datasets.readers import detect_format, read_samples
from mmgpt.datasets.readers.base import expand_paths
from mmgpt.datasets.schema import Sample
from mmgpt.errors import ConfigError, ContextOverflowError, DataError
from mmgpt.eval.fewshot import FORMATS, SELECTS, ExampleSelector, MediaEmbedder, PromptFormat, build_prompt
from mmgpt.eval.predict import ModelPredictor, Predictor
from mmgpt.eval.report import write_report
from mmgpt.eval.result import EvalResult
from mmgpt.eval.scoring import score_task
from mmgpt.eval.tasks import MAX_NEW_TOKENS, OWN_EXAMPLES_TASKS, TASKS, EvalItem, collect_items

log = logging.getLogger(__name__)
Data = str | Path | Sequence[str | Path] | Iterable[Sample]


def load_samples(data: Data, media_folder: str | Path | None = None) -> Iterable[Sample]:
    """Samples from a path or glob (any format :func:`read_samples` reads), several paths, or samples.

    Caption files (COCO JSON, audio-caption CSV) are read with ``mode="all"``: one sample per
    image or clip with every caption as a reference.

    Args:
        data: a path or glob, a list of them, or samples (returned as they are).
        media_folder: the folder the rows' media paths are relative to (COCO ``file_name``, CSV
            clip names, JSONL / LLaVA paths; default each data file's own folder). Paths outside it
            are bad rows (see :class:`mmgpt.datasets.readers.base.MediaRoot`).

    Raises:
        DataError: a path names no file, or its format is unknown or mixed.
    """
    if isinstance(data, (str, Path)):
        formats = {detect_format(p) for p in expand_paths(data)}
        kwargs: dict[str, Any] = {"media_folder": media_folder}
        if formats <= {"coco", "audio_captions"}:
            kwargs["mode"] = "all"
        return read_samples(data, **kwargs)
    if isinstance(data, Sequence) and data and all(isinstance(d, (str, Path)) for d in data):
        return [s for d in data for s in load_samples(d, media_folder)]
    return data


def _check(tasks, shots, select, format, batch_size, limit) -> tuple[int, ...]:
    unknown = sorted(set(tasks or ()) - set(TASKS))
    if unknown:
        raise ConfigError(f"unknown task(s) {unknown} (expected {', '.join(TASKS)})")
    shots = tuple(int(k) for k in shots)
    if not shots or any(k < 0 for k in shots):
        raise ConfigError(f"shots must be one or more integers >= 0, got {shots}")
    if select not in SELECTS:
        raise ConfigError(f"select={select!r} is not one of {', '.join(SELECTS)}")
    if format not in FORMATS:
        raise ConfigError(f"format={format!r} is not one of {', '.join(FORMATS)}")
    if batch_size < 1 or (limit is not None and limit < 1):
        raise ConfigError(f"batch_size and limit must be >= 1, got {batch_size} and {limit}")
    return shots


def evaluate(model, data: Data, *, tasks: Sequence[str] | None = None, shots: Sequence[int] = (0,),
             select: str = "random", limit: int | None = None, batch_size: int = 16,
             max_new_tokens: int | None = None, seed: int = 0, out_dir: str | Path | None = None,
             progress: bool = True, support: Data | None = None, format: PromptFormat = "chat",
             predictor: Predictor | None = None, name: str | None = None,
             media_folder: str | Path | None = None) -> EvalResult:
    """Evaluate a model (or any predictor) on every task found in ``data``, for each shots value.

    Args:
        model: an MMGPT (may be None when ``predictor`` is given and ``select="random"``).
        data: a path or glob (JSONL, LLaVA JSON, COCO captions, caption CSV, tar shards), a list
            of them, or an iterable of Samples.
        tasks: tasks to keep (default: every task found).
        shots: numbers of in-context examples, e.g. ``(0, 2, 4)``.
        select: ``"random"`` (seeded per query) or ``"similar"`` (nearest by encoder features).
        limit: at most this many items per task (the first ones, in data order).
        batch_size: prompts per generation call.
        max_new_tokens: generation budget (default 8 for QA, 64 for captions, chat and transcripts).
        seed: seeds example choice and generation; the caller's RNG state is left untouched.
        out_dir: write ``<task>.json``, ``summary.json``, ``report.md`` and PNG charts there.
        progress: show a progress bar per task and shots value.
        support: where few-shot examples come from (default: ``data`` itself, minus each query).
        format: ``"chat"`` (chat template) or ``"completion"`` (a base model continues a document).
        predictor: answers prompts instead of ``model`` (see :class:`~mmgpt.eval.predict.Predictor`).
        name: what the report calls the model (default: ``"model"``).
        media_folder: where the images / clips of COCO or CSV caption files are (default: next
            to the caption file).

    Returns:
        An :class:`EvalResult`.

    Raises:
        ConfigError: an unknown task, select or format; bad shots, limit or batch size; no model.
        DataError: the data has no evaluation item (or cannot be read).
    """
    shots = _check(tasks, shots, select, format, batch_size, limit)
    if model is None and (predictor is None or (select == "similar" and max(shots) > 0)):
        raise ConfigError("evaluate needs a model (select='similar' embeds media with its encoders) "
                          "or a predictor")
    items, pool = _items(data, support, media_folder, tasks)
    run = _Run(predictor or ModelPredictor(model, format), pool, select, format, seed, batch_size, limit,
               max_new_tokens, progress, MediaEmbedder(model, batch_size) if select == "similar" and max(shots) > 0
               else None)
    by_shots: dict[int, dict[str, dict]] = {k: {} for k in shots}
    records: dict[int, dict[str, list[dict]]] = {k: {} for k in shots}
    on_cuda = model is not None and model.device.type == "cuda"
    with torch.random.fork_rng(devices=[model.device.index or 0] if on_cuda else []):
        for k in shots:
            for task, task_items in items.items():
                by_shots[k][task], records[k][task] = run.task(task, task_items, k, first=k == shots[0])
    settings = {"model": name or "model", "data": _describe(data), "support": _describe(support),
                "tasks": list(items), "shots": list(shots), "select": select, "format": format, "seed": seed,
                "limit": limit, "batch_size": batch_size, "max_new_tokens": max_new_tokens}
    result = EvalResult(shots, by_shots, records, settings)
    if out_dir is not None:
        result.files = write_report(result, out_dir)
    return result


def _items(data: Data, support: Data | None, media_folder, tasks) -> tuple[dict, dict]:
    """Evaluation items per task, and the few-shot pool per task (``data`` itself by default)."""
    items = collect_items(load_samples(data, media_folder), tasks)
    if not items:
        raise DataError(f"{data if isinstance(data, (str, Path)) else 'the data'}: no evaluation items "
                        f"(tasks {', '.join(tasks or TASKS)}); documents and rows without answers are skipped")
    missing = sorted(set(tasks or ()) - set(items))
    if missing:
        log.warning("eval: no items for task(s) %s in the data", ", ".join(missing))
    return items, items if support is None else collect_items(load_samples(support, media_folder), tasks)


@dataclass
class _Run:
    """The settings of one :func:`evaluate` call that every (task, shots) pass shares."""

    predictor: Predictor
    pool: dict[str, list[EvalItem]]
    select: str
    format: PromptFormat
    seed: int
    batch_size: int
    limit: int | None
    max_new_tokens: int | None
    progress: bool
    embedder: MediaEmbedder | None

    def task(self, task: str, task_items: list[EvalItem], k: int, first: bool) -> tuple[dict, list[dict]]:
        """Metrics and per-item records of ``task`` with ``k`` examples per query."""
        queries = task_items[: self.limit] if self.limit else task_items
        if len(queries) < len(task_items) and first:
            log.info("eval %s: scoring the first %d of %d items (limit)", task, len(queries), len(task_items))
        examples: list[list[EvalItem]] = [[] for _ in queries]
        if k > 0 and task in OWN_EXAMPLES_TASKS:  # the item's own examples hold its words
            examples = [q.examples[:k] for q in queries]
            short = sum(len(q.examples) < k for q in queries)
            if short:
                log.warning("eval %s %d-shot: %d of %d items have fewer than %d examples of their own",
                            task, k, short, len(queries), k)
        elif k > 0:
            selector = ExampleSelector(self.pool.get(task, []), self.select, self.seed, self.embedder)
            examples = [selector.choose(q, k) for q in queries]
            if selector.short:
                log.warning("eval %s %d-shot: %d of %d queries got fewer than %d examples (small support pool)",
                            task, k, selector.short, len(queries), k)
        preds, used = run_predictions(self.predictor, queries, examples, format=self.format,
                                      max_new_tokens=self.max_new_tokens or MAX_NEW_TOKENS[task],
                                      batch_size=self.batch_size, seed=self.seed, progress=self.progress,
                                      desc=f"eval {task} {k}-shot")
        metrics, recs = score_task(task, queries, [p for p, _ in preds])
        for rec, (_, error), ex in zip(recs, preds, used):
            rec["examples"] = [e.source for e in ex]
            if error:
                rec["error"] = error
        return metrics, recs


def _describe(data: Data | None) -> str | list[str] | None:
    if data is None or isinstance(data, (str, Path)):
        return None if data is None else str(data)
    if isinstance(data, Sequence) and all(isinstance(d, (str, Path)) for d in data):
        return [str(d) for d in data]
    return "<samples>"


def _size(prompt: Sample) -> int:
    """A cheap length estimate for sorting: text characters plus a flat cost per medium."""
    return sum(len(s.text) if s.type == "text" else 64 for _, s in prompt.segments)


def run_predictions(predictor: Predictor, items: list[EvalItem], examples: list[list[EvalItem]], *,
                    format: PromptFormat, max_new_tokens: int, batch_size: int, seed: int = 0,
                    progress: bool = True, desc: str = "eval") -> tuple[list[tuple[str, str | None]], list[list]]:
    """Answer every item, longest prompts first in batches; results come back in item order.

    A batch with a prompt that does not fit the context is retried one item at a time, and
    such an item drops examples (furthest from the query first) until it fits; an item whose
    query alone does not fit gets an empty answer and an error message. Both are logged.

    Args:
        predictor: answers prompts.
        items: the queries.
        examples: the examples of each query, in prompt order.
        format: prompt format.
        max_new_tokens: generation budget.
        batch_size: prompts per call.
        seed: ``torch.manual_seed`` before generating (greedy decoding is deterministic anyway).
        progress: show a tqdm bar.
        desc: the bar's label.

    Returns:
        ``([(answer, error or None)], examples actually used)``, both in item order.
    """
    prompts = [build_prompt(q, ex, format) for q, ex in zip(items, examples)]
    order = sorted(range(len(items)), key=lambda i: -_size(prompts[i]))
    answers: list[tuple[str, str | None]] = [("", None)] * len(items)
    used = list(examples)
    torch.manual_seed(seed)
    with tqdm(total=len(items), desc=desc, unit="item", disable=not progress, leave=False) as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            try:
                out = predictor([prompts[i] for i in idx], [items[i] for i in idx], max_new_tokens)
                for i, text in zip(idx, out):
                    answers[i] = (text, None)
            except ContextOverflowError:
                for i in idx:
                    answers[i], used[i] = _predict_fitting(predictor, items[i], examples[i], format, max_new_tokens)
            bar.update(len(idx))
    return answers, used


def _predict_fitting(predictor: Predictor, item: EvalItem, examples: list[EvalItem], format: PromptFormat,
                     max_new_tokens: int) -> tuple[tuple[str, str | None], list[EvalItem]]:
    """Answer one item with as many of its examples as fit the context."""
    error = ""
    for drop in range(len(examples) + 1):
        kept = examples[drop:]
        try:
            (text,) = predictor([build_prompt(item, kept, format)], [item], max_new_tokens)
        except ContextOverflowError as e:
            error = str(e)
            continue
        if drop:
            log.warning("%s: %d of %d examples dropped to fit the context", item.source, drop, len(examples))
        return (text, None), kept
    log.warning("%s: the query does not fit the context; scored as an empty answer (%s)", item.source, error)
    return ("", error), []
