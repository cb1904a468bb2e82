"""Evaluation tasks: which task a sample belongs to, and the items (query + references) it yields.

Tasks: ``image_caption``, ``audio_caption``, ``image_qa``, ``audio_qa``, ``crossmodal_qa``,
``chat`` and ``transcription``. ShapesTones rows name theirs in ``meta["task"]`` (documents
are skipped); other data is classified from the sample:

* ``meta["transcript"]`` and audio -> ``transcription`` (WER / CER against the transcript);
* caption references (``meta["references"]``, from the COCO / CSV readers, or
  ``meta["caption_index"]``) -> ``image_caption`` with an image, else ``audio_caption``;
* a chat with more than one assistant turn -> ``chat``;
* ``new_words`` (ShapesTones): a chat of solved examples then a query, whose answers are words
  that exist only in the examples; its item is the last question, and the examples before it
  are the item's own (:attr:`EvalItem.examples`), what a k-shot prompt shows of them;
* one answer -> ``crossmodal_qa`` (image and audio), ``image_qa``, ``audio_qa``, or ``chat``
  (text only).

An item's query is the sample up to and without the assistant turn to predict; its references
are that turn's text (or ``meta["references"]``). A chat yields one item per assistant turn,
each with the real history before it (multi-turn evaluation with teacher-forced history).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmgpt.datasets.schema import Sample, Segment, Turn

log = logging.getLogger(__name__)

TASKS: tuple[str, ...] = (
    "image_caption", "audio_caption", "image_qa", "audio_qa", "crossmodal_qa", "chat", "transcription", "new_words",
)
CAPTION_TASKS = ("image_caption", "audio_caption")
QA_TASKS = ("image_qa", "audio_qa", "crossmodal_qa", "chat", "new_words")
SKIPPED_TASKS = ("document", "fewshot")
#: tasks whose items carry their own examples (the words to use exist only in them)
OWN_EXAMPLES_TASKS = ("new_words",)
#: default ``max_new_tokens`` per task
MAX_NEW_TOKENS = {"image_qa": 8, "audio_qa": 8, "crossmodal_qa": 8, "chat": 64,
                  "image_caption": 64, "audio_caption": 64, "transcription": 64, "new_words": 10}


@dataclass
class EvalItem:
    """One thing to predict.

    Attributes:
        task: one of :data:`TASKS`.
        query: the prompt sample, ending with the user turn to answer.
        references: reference texts (at least one).
        source: where the item came from (the sample's source, ``#turn<k>`` for chat turns).
        sample_source: the sample's own source.
        attribute: the ShapesTones attribute asked about, or None.
        meta: the sample's meta (ground truth).
        media_keys: identities of the query's media (paths, or content hashes).
        examples: the item's own solved examples, in order (``new_words``); k-shot prompts take
            the first k of them instead of drawing from a support pool.
    """

    task: str
    query: Sample
    references: list[str]
    source: str
    sample_source: str
    attribute: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    media_keys: frozenset[str] = frozenset()
    examples: list[EvalItem] = field(default_factory=list)

    @property
    def answer(self) -> str:
        """The first reference (the answer shown when the item is a few-shot example)."""
        return self.references[0]

    @property
    def modalities(self) -> tuple[str, ...]:
        """Media kinds of the query, in ``("image", "audio")`` order."""
        kinds = {seg.type for seg in self.query.media()}
        return tuple(k for k in ("image", "audio") if k in kinds)

    def overlaps(self, other: EvalItem) -> bool:
        """True when two items come from the same sample or share a medium."""
        return self.sample_source == other.sample_source or bool(self.media_keys & other.media_keys)


def media_key(media: Any) -> str:
    """An identity for a medium: its path, or a hash of its bytes (bytes, arrays, PIL images)."""
    if isinstance(media, (str, Path)):
        return f"path:{Path(media).absolute() if '://' not in str(media) else media}"
    if isinstance(media, tuple) and len(media) == 2:  # (waveform, sample_rate)
        return media_key(media[0]) + f"@{media[1]}"
    data = media if isinstance(media, bytes) else getattr(media, "tobytes", lambda: repr(media).encode())()
    return "sha1:" + hashlib.sha1(data).hexdigest()


def turn_text(turn: Turn) -> str:
    """The text of a turn (its text segments joined)."""
    return "".join(seg.text for seg in turn.segments if seg.type == "text").strip()


def infer_task(sample: Sample) -> str | None:
    """The task of a sample (``meta["task"]`` first, else from its content), None to skip it."""
    task = sample.meta.get("task")
    if task in TASKS:
        return task
    if task in SKIPPED_TASKS or not sample.is_chat:
        return None
    kinds = {seg.type for seg in sample.media()}
    if "transcript" in sample.meta and "audio" in kinds:
        return "transcription"
    if "references" in sample.meta or "caption_index" in sample.meta:
        return "image_caption" if "image" in kinds else "audio_caption" if "audio" in kinds else None
    if sum(t.role == "assistant" for t in sample.turns) > 1:
        return "chat"
    if {"image", "audio"} <= kinds:
        return "crossmodal_qa"
    return "image_qa" if "image" in kinds else "audio_qa" if "audio" in kinds else "chat"


def _media_keys(sample: Sample) -> frozenset[str]:
    return frozenset(media_key(seg.media) for seg in sample.media())


def _sub(sample: Sample, turns: list[Turn]) -> Sample:
    return Sample([Turn(t.role, list(t.segments)) for t in turns], dict(sample.meta), sample.source)


def sample_items(sample: Sample) -> list[EvalItem]:
    """The items of one sample (none for documents and samples without a reference).

    Args:
        sample: a chat sample from any reader.

    Returns:
        One item, or one per assistant turn for ``chat``.
    """
    task = infer_task(sample)
    if task is None:
        return []
    meta, turns = sample.meta, sample.turns
    answers = [i for i, t in enumerate(turns) if t.role == "assistant"]
    if task in OWN_EXAMPLES_TASKS:
        return _own_examples_item(task, sample, answers)
    if task == "chat" and answers:
        attributes = meta.get("attributes") if isinstance(meta.get("attributes"), list) else []
        items = []
        for j, i in enumerate(answers):
            if not any(t.role == "user" for t in turns[:i]):
                continue
            query = _sub(sample, turns[:i])
            attr = attributes[j] if j < len(attributes) else None
            items.append(EvalItem(task, query, [turn_text(turns[i])], f"{sample.source}#turn{j}",
                                  sample.source, attr, meta, _media_keys(query)))
        return items
    end = answers[-1] if answers and answers[-1] == len(turns) - 1 else len(turns)
    query = _sub(sample, turns[:end])
    if task == "transcription":
        refs = [str(meta["transcript"])]
    elif task in CAPTION_TASKS and isinstance(meta.get("references"), list) and meta["references"]:
        refs = [str(r) for r in meta["references"]]
    elif end < len(turns):
        refs = [turn_text(turns[end])]
    else:
        return []
    if not query.turns or query.turns[-1].role != "user":
        return []
    attribute = meta.get("attribute") if isinstance(meta.get("attribute"), str) else None
    return [EvalItem(task, query, refs, sample.source, sample.source, attribute, meta, _media_keys(query))]


def _own_examples_item(task: str, sample: Sample, answers: list[int]) -> list[EvalItem]:
    """The last question of the chat, with each (question, answer) pair before it as its examples."""
    turns = sample.turns
    if not answers or answers[-1] != len(turns) - 1 or turns[-2].role != "user":
        return []

    def item(i: int, source: str) -> EvalItem:  # the user turn before answer i, answered
        query = _sub(sample, [turns[i - 1]])
        return EvalItem(task, query, [turn_text(turns[i])], source, sample.source, None, sample.meta,
                        _media_keys(query))

    out = item(answers[-1], sample.source)
    out.examples = [item(i, f"{sample.source}#example{j}") for j, i in enumerate(answers[:-1])
                    if turns[i - 1].role == "user"]
    return [out]


def collect_items(samples: Iterable[Sample], tasks: Iterable[str] | None = None) -> dict[str, list[EvalItem]]:
    """Group the items of many samples by task, in :data:`TASKS` order.

    Args:
        samples: any samples (documents and unanswerable rows are skipped and counted in the log).
        tasks: keep only these tasks (None: all).

    Returns:
        task -> items in data order; tasks with no item are absent.
    """
    wanted = set(tasks) if tasks is not None else set(TASKS)
    grouped: dict[str, list[EvalItem]] = {}
    skipped = 0
    for sample in samples:
        items = sample_items(sample)
        skipped += not items
        for item in items:
            if item.task in wanted:
                grouped.setdefault(item.task, []).append(item)
    if skipped:
        log.info("eval: %d samples are not evaluation items (documents or rows without a reference)", skipped)
    return {t: grouped[t] for t in TASKS if t in grouped}


def text_turn(role: str, text: str) -> Turn:
    """A turn holding one text segment."""
    return Turn(role, [Segment("text", text=text)])
