"""Few-shot prompts: k solved examples (media + question + answer) before the query.

Two prompt formats:

* ``chat`` (instruction-tuned models): per example, its user turn(s) and an assistant turn with
  its answer, then the query's turns; the processor renders ChatML::

      <|im_start|>user\\n<image> Q1<|im_end|>\\n<|im_start|>assistant\\n A1<|im_end|>\\n
      <|im_start|>user\\n<audio> Q2<|im_end|>\\n<|im_start|>assistant\\n A2<|im_end|>\\n
      <|im_start|>user\\n<image> Q<|im_end|>\\n<|im_start|>assistant\\n      <- generation prompt

* ``completion`` (base models never instruction-tuned): one role-less document that the model
  continues::

      <image>Question: Q1 Answer: A1\\n<audio>Question: Q2 Answer: A2\\n<image>Question: Q Answer:

Examples come from a support pool and never include the query item (same sample, or any shared
medium). ``random`` draws them with a generator seeded by (seed, query source), so a query gets the
same examples in every run; ``similar`` takes the k nearest by cosine similarity of mean-pooled
encoder features (RICES), with the support embeddings computed once per medium.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from mmgpt.batching import pad_stack
from mmgpt.datasets.schema import Sample, Segment, Turn
from mmgpt.errors import ConfigError
from mmgpt.eval.tasks import EvalItem, media_key, text_turn, turn_text

PromptFormat = Literal["chat", "completion"]
FORMATS = ("chat", "completion")
SELECTS = ("random", "similar")


# ---------------------------------------------------------------------- prompt layout
def _example_turns(item: EvalItem) -> list[Turn]:
    """The example's turns without system turns, ending with its answer."""
    turns = [Turn(t.role, list(t.segments)) for t in item.query.turns if t.role != "system"]
    return [*turns, text_turn("assistant", item.answer)]


def chat_prompt(query: EvalItem, examples: list[EvalItem]) -> Sample:
    """A chat sample: the query's system turns, each example's turns and answer, then the query.

    Args:
        query: the item to answer.
        examples: solved support items, in order.

    Returns:
        A chat Sample whose last turn is the query's user turn.
    """
    system = [t for t in query.query.turns if t.role == "system"]
    turns = list(system)
    for ex in examples:
        turns += _example_turns(ex)
    turns += [Turn(t.role, list(t.segments)) for t in query.query.turns if t.role != "system"]
    return Sample(turns, dict(query.meta), query.source)


def _qa_segments(turns: list[Turn], answer: str | None) -> list[Segment]:
    """``<media>Question: q Answer: a\\n`` per user/assistant pair; ends with ``Answer:`` when unanswered."""
    out: list[Segment] = []
    for turn in turns:
        if turn.role == "system":
            out.append(Segment("text", text=turn_text(turn) + "\n"))
        elif turn.role == "user":
            out += [s for s in turn.segments if s.type != "text"]
            out.append(Segment("text", text=f"Question: {turn_text(turn)} Answer:"))
        else:
            out.append(Segment("text", text=f" {turn_text(turn)}\n"))
    if answer is not None:
        out.append(Segment("text", text=f" {answer}\n"))
    return out


def _merge_text(segments: list[Segment]) -> list[Segment]:
    """Join neighbouring text segments, so the text tokenises as one string."""
    out: list[Segment] = []
    for seg in segments:
        if seg.type == "text" and out and out[-1].type == "text":
            out[-1] = Segment("text", text=out[-1].text + seg.text)
        else:
            out.append(seg)
    return out


def completion_prompt(query: EvalItem, examples: list[EvalItem]) -> Sample:
    """A role-less document: each example as ``<media>Question: ... Answer: ...\\n``, then the query
    ending with ``Answer:`` for the model to complete."""
    segments: list[Segment] = []
    for ex in examples:
        segments += _qa_segments([t for t in ex.query.turns if t.role != "system"], ex.answer)
    segments += _qa_segments(query.query.turns, None)
    return Sample([Turn(None, _merge_text(segments))], dict(query.meta), query.source)


def build_prompt(query: EvalItem, examples: list[EvalItem], format: PromptFormat = "chat") -> Sample:
    """The prompt for ``query`` with ``examples`` in ``format`` (``"chat"`` or ``"completion"``).

    Raises:
        ConfigError: unknown format.
    """
    if format == "chat":
        return chat_prompt(query, examples)
    if format == "completion":
        return completion_prompt(query, examples)
    raise ConfigError(f"format={format!r} is not one of {', '.join(FORMATS)}")


# ---------------------------------------------------------------------- selection
def _seed_for(seed: int, source: str) -> int:
    """Per-query seed from the file name and line of ``source`` (``path:line``), not the folder,
    so the same data file picks the same examples wherever it lives."""
    return zlib.crc32(f"{seed}:{Path(source).name}".encode())


class MediaEmbedder:
    """Mean-pooled encoder features of media, cached by medium (for ``select="similar"``).

    Args:
        model: an MMGPT (its encoders, and its processor to decode and prepare media).
        batch_size: media per encoder call.
    """

    def __init__(self, model, batch_size: int = 16) -> None:
        self.model = model
        self.batch_size = batch_size
        self.cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def _encode(self, kind: str, media: list) -> torch.Tensor:
        """Mean over each item's valid feature vectors: (I, D)."""
        enc = self.model.encoders[kind]
        param = next(enc.parameters())
        values, lengths = pad_stack([self.model.processor.load_media(Segment(kind, media=m)) for m in media])
        feats, out_len = enc(values.to(param.device, param.dtype), lengths.to(param.device))  # (I, N, D), (I,)
        out_len = out_len.to(feats.device)
        keep = (torch.arange(feats.shape[1], device=feats.device)[None, :] < out_len[:, None]).float()  # (I, N)
        return (feats.float() * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1)  # (I, D)

    def embed(self, items: list[EvalItem], kind: str) -> list[torch.Tensor | None]:
        """One unit vector per item: the mean of its ``kind`` media features (None without such media)."""
        todo: dict[str, object] = {}
        for item in items:
            for seg in item.query.media(kind):
                key = _key(seg)
                if key not in self.cache:
                    todo.setdefault(key, seg.media)
        keys = list(todo)
        was_training = self.model.training
        self.model.eval()
        try:
            for i in range(0, len(keys), self.batch_size):
                chunk = keys[i : i + self.batch_size]
                vecs = self._encode(kind, [todo[k] for k in chunk]).cpu()
                self.cache.update(zip(chunk, vecs))
        finally:
            self.model.train(was_training)
        out: list[torch.Tensor | None] = []
        for item in items:
            vecs = [self.cache[_key(seg)] for seg in item.query.media(kind)]
            out.append(torch.nn.functional.normalize(torch.stack(vecs).mean(0), dim=0) if vecs else None)
        return out


def _key(seg: Segment) -> str:
    return f"{seg.type}:{media_key(seg.media)}"


class ExampleSelector:
    """Chooses k support examples for each query.

    Args:
        support: the support pool of one task.
        select: ``"random"`` or ``"similar"``.
        seed: seeds the random choice (per query) and breaks nothing else.
        embedder: a :class:`MediaEmbedder` (required for ``"similar"``).

    Raises:
        ConfigError: unknown ``select``, or ``"similar"`` without an embedder.
    """

    def __init__(self, support: list[EvalItem], select: str = "random", seed: int = 0,
                 embedder: MediaEmbedder | None = None) -> None:
        if select not in SELECTS:
            raise ConfigError(f"select={select!r} is not one of {', '.join(SELECTS)}")
        if select == "similar" and embedder is None:
            raise ConfigError("select='similar' needs a model with encoders (no embedder was given)")
        self.support, self.select, self.seed, self.embedder = support, select, seed, embedder
        self._support_vecs: dict[str, torch.Tensor | None] = {}
        self.short = 0  # queries that got fewer than k examples

    def _vectors(self, kind: str) -> torch.Tensor | None:
        """(N_support, D) unit vectors for ``kind`` (zeros where an item lacks it), computed once."""
        if kind not in self._support_vecs:
            vecs = self.embedder.embed(self.support, kind)
            dim = next((v.numel() for v in vecs if v is not None), 0)
            self._support_vecs[kind] = (
                torch.stack([v if v is not None else torch.zeros(dim) for v in vecs]) if dim else None
            )
        return self._support_vecs[kind]

    def choose(self, query: EvalItem, k: int) -> list[EvalItem]:
        """Up to ``k`` support items that do not overlap the query (fewer when the pool is short).

        Returns:
            The examples in prompt order: drawn order for ``"random"``; for ``"similar"`` the most
            similar last, next to the query.
        """
        if k <= 0:
            return []
        allowed = [i for i, s in enumerate(self.support) if not s.overlaps(query)]
        if len(allowed) < k:
            self.short += 1
        kinds = query.modalities
        if self.select == "random" or not kinds:
            rng = np.random.default_rng(_seed_for(self.seed, query.source))
            picks = rng.permutation(len(allowed))[:k]
            return [self.support[allowed[int(p)]] for p in picks]
        sims = torch.zeros(len(allowed))
        for kind in kinds:
            (q,) = self.embedder.embed([query], kind)
            vecs = self._vectors(kind)
            if q is not None and vecs is not None:
                sims += vecs[allowed] @ q  # (N_allowed,) cosine similarity
        order = torch.argsort(-sims, stable=True)[:k].flip(0)  # most similar last
        return [self.support[allowed[int(i)]] for i in order]
