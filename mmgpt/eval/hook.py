"""Evaluation during training: the same harness on a small validation slice every N steps.

The trainer owns the loop, the metrics JSONL and the plot; this gives it one call::

    periodic = PeriodicEval("data/shapestones/val.jsonl", every=500, limit=32)
    ...
    if periodic.due(step):
        log_metrics(step, periodic(model))      # {"eval/image_qa/accuracy": 0.98, ...}
"""

from __future__ import annotations

from collections.abc import Sequence

from mmgpt.errors import ConfigError
from mmgpt.eval.harness import Data, evaluate, load_samples


class PeriodicEval:
    """Evaluate a model on a fixed validation slice; returns flat metrics ready to log.

    The slice is read once. Each call generates greedily with ``progress=False``, restores the
    model's train/eval mode, and leaves the global RNG state as it found it (so training stays
    reproducible and resumable).

    Args:
        data: validation data (path, glob, list of paths, or Samples).
        every: run every this many optimizer steps (0 = never).
        limit: items per task.
        tasks: tasks to keep (default: all found).
        shots: shots values (default zero-shot only).
        batch_size: prompts per generation call.
        seed: example and generation seed.
        prefix: prepended to every metric key.

    Raises:
        ConfigError: ``every`` or ``limit`` is negative or zero where it must not be.
        DataError: the data cannot be read.
    """

    def __init__(self, data: Data, *, every: int = 500, limit: int = 32, tasks: Sequence[str] | None = None,
                 shots: Sequence[int] = (0,), batch_size: int = 16, seed: int = 0, prefix: str = "eval/") -> None:
        if every < 0 or limit < 1:
            raise ConfigError(f"PeriodicEval: every must be >= 0 and limit >= 1, got {every} and {limit}")
        self.samples = list(load_samples(data))
        self.every, self.limit, self.tasks, self.shots = every, limit, tasks, tuple(shots)
        self.batch_size, self.seed, self.prefix = batch_size, seed, prefix

    def due(self, step: int) -> bool:
        """True when ``step`` (counted from 1) is a multiple of ``every``."""
        return self.every > 0 and step > 0 and step % self.every == 0

    def __call__(self, model) -> dict[str, float]:
        """Run the evaluation; returns ``{prefix + "task/metric": value}``."""
        result = evaluate(model, self.samples, tasks=self.tasks, shots=self.shots, limit=self.limit,
                          batch_size=self.batch_size, seed=self.seed, progress=False)
        return {self.prefix + k: v for k, v in result.flat().items()}
