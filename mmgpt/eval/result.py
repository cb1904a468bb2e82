"""What an evaluation measured (:class:`EvalResult`) and its markdown tables."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmgpt.eval.scoring import ATTRIBUTE_ORDER
from mmgpt.eval.tasks import TASKS


@dataclass
class EvalResult:
    """What :func:`evaluate` measured.

    Attributes:
        shots: the shot counts evaluated, in the order asked.
        by_shots: shots -> task -> metrics (``{metric: value, "per_attribute": {...}, "n": ...}``).
        records: shots -> task -> one record per item (prediction next to references).
        settings: how the run was made (data, format, select, seed, limit...).
        files: the files written (empty without ``out_dir``).
    """

    shots: tuple[int, ...]
    by_shots: dict[int, dict[str, dict[str, Any]]]
    records: dict[int, dict[str, list[dict]]]
    settings: dict[str, Any] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    @property
    def tasks(self) -> list[str]:
        """Tasks evaluated, in :data:`~mmgpt.eval.tasks.TASKS` order."""
        return [t for t in TASKS if any(t in m for m in self.by_shots.values())]

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        """task -> metrics for the first shots value asked (the only one in the usual case)."""
        return self.by_shots[self.shots[0]]

    def flat(self) -> dict[str, float]:
        """Flat metrics for logging: ``{"image_qa/accuracy": 0.98, "image_qa/colour": 1.0, ...}``.

        With several shots values the keys carry them: ``"image_qa/2shot/accuracy"``.
        """
        out: dict[str, float] = {}
        for k in self.shots:
            tag = f"/{k}shot" if len(self.shots) > 1 else ""
            for task, metrics in self.by_shots[k].items():
                for name, value in metrics.items():
                    if name == "per_attribute":
                        out.update({f"{task}{tag}/{a}": float(v) for a, v in value.items()})
                    elif name != "n" and isinstance(value, float):
                        out[f"{task}{tag}/{name}"] = value
        return out

    def table(self) -> str:
        """Markdown tables: metrics per task and shots, then per-attribute accuracy."""
        return results_table(self)


#: (metric, column header); fractions are shown as percentages
COLUMNS = (("accuracy", "accuracy %"), ("vqa_accuracy", "VQA acc. %"), ("exact_match", "exact match %"),
           ("attribute_accuracy", "attribute acc. %"), ("cider", "CIDEr"), ("bleu", "BLEU-4"),
           ("wer", "WER %"), ("cer", "CER %"))
RAW = {"cider": "{:.3f}", "bleu": "{:.1f}"}


def format_value(metric: str, value: Any) -> str:
    """A metric for a table cell: fractions as percentages, CIDEr and BLEU as they are."""
    if not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return RAW[metric].format(value) if metric in RAW else f"{100 * value:.1f}"


def result_rows(result: EvalResult):
    for task in result.tasks:
        for k in result.shots:
            if task in result.by_shots[k]:
                yield task, k, result.by_shots[k][task]


def results_table(result: EvalResult) -> str:
    """Markdown: one table of metrics per (task, shots), one of per-attribute accuracy (%)."""
    rows = list(result_rows(result))
    cols = [(m, h) for m, h in COLUMNS if any(m in r[2] for r in rows)]
    lines = ["| task | shots | n | " + " | ".join(h for _, h in cols) + " |",
             "|---|---:|---:|" + "---:|" * len(cols)]
    for task, k, m in rows:
        cells = [format_value(name, m.get(name)) for name, _ in cols]
        lines.append(f"| {task} | {k} | {m['n']} | " + " | ".join(cells) + " |")
    attrs = attribute_columns(rows)
    if attrs:
        lines += ["", "Per-attribute accuracy (%), from the ground truth:", "",
                  "| task | shots | " + " | ".join(attrs) + " |", "|---|---:|" + "---:|" * len(attrs)]
        for task, k, m in rows:
            per = m.get("per_attribute")
            if per:
                lines.append(f"| {task} | {k} | " + " | ".join(format_value(a, per.get(a)) for a in attrs) + " |")
    return "\n".join(lines)


def attribute_columns(rows) -> list[str]:
    seen = {a for _, _, m in rows for a in m.get("per_attribute", {})}
    return [a for a in ATTRIBUTE_ORDER if a in seen] + sorted(seen - set(ATTRIBUTE_ORDER))
