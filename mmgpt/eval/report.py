"""Reports people read: markdown tables, per-task JSON with every prediction, and PNG charts.

Files written by :func:`write_report` into the output folder:

=====================  ================================================================
``<task>.json``        settings, and per shots value the metrics and every prediction next
                       to its references, source and the sources of its examples
``summary.json``       settings, metrics per shots value and task, and the flat metrics
``report.md``          the tables of :func:`results_table` and the charts
``attributes.png``     per-attribute accuracy per task (bars per shots value)
``shots.png``          each task's main metric against the number of shots (several shots only)
=====================  ================================================================

Charts are drawn on a bare matplotlib ``Figure`` (Agg canvas), never through pyplot, so the
caller's backend is left alone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mmgpt.eval.result import RAW, EvalResult, attribute_columns, result_rows
from mmgpt.eval.scoring import headline


def plot_attributes(result: EvalResult, path: Path) -> Path | None:
    """Bar chart of per-attribute accuracy: one panel per task, one bar per shots value.

    Returns:
        ``path``, or None when no task has per-attribute scores (nothing is written).
    """
    from matplotlib.figure import Figure

    tasks = [t for t in result.tasks if any(result.by_shots[k].get(t, {}).get("per_attribute") for k in result.shots)]
    if not tasks:
        return None
    fig = Figure(figsize=(8, 2.6 * len(tasks)))
    axes = fig.subplots(len(tasks), 1, squeeze=False)[:, 0]
    width = 0.8 / len(result.shots)
    for ax, task in zip(axes, tasks):
        attrs = attribute_columns([r for r in result_rows(result) if r[0] == task])
        for j, k in enumerate(result.shots):
            per = result.by_shots[k].get(task, {}).get("per_attribute", {})
            xs = [i - 0.4 + width * (j + 0.5) for i in range(len(attrs))]
            ax.bar(xs, [100 * per.get(a, float("nan")) for a in attrs], width, label=f"{k}-shot")
        ax.set_xticks(range(len(attrs)), attrs)
        ax.set_xlim(-0.6, max(len(attrs), 4) - 0.4)  # one attribute still gets a narrow bar
        ax.set_ylim(0, 105)
        ax.set_ylabel("accuracy %")
        ax.set_title(task)
        if len(result.shots) > 1:
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_shots(result: EvalResult, path: Path) -> Path | None:
    """Line chart of each task's main metric against the number of shots (one panel per task).

    Returns:
        ``path``, or None with fewer than two shots values or no task with a main metric.
    """
    from matplotlib.figure import Figure

    if len(result.shots) < 2:
        return None
    series = {}
    for task in result.tasks:
        points = [(k, headline(task, result.by_shots[k][task])) for k in result.shots if task in result.by_shots[k]]
        points = [(k, h) for k, h in points if h is not None]
        if points:
            series[task] = points
    if not series:
        return None
    ncols = min(3, len(series))
    nrows = math.ceil(len(series) / ncols)
    fig = Figure(figsize=(3.6 * ncols, 2.8 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (task, points) in zip(axes, series.items()):
        name = points[0][1][0]
        scale = 1 if name in RAW else 100
        ys = [scale * h[1] for _, h in points]
        ax.plot([k for k, _ in points], ys, marker="o")
        ax.set_ylim(0, max(max(ys) * 1.05, 1e-6 if name in RAW else 100.0))  # percentages on a 0-100 axis
        ax.set_xticks([k for k, _ in points])
        ax.set_xlabel("shots")
        ax.set_ylabel(name + ("" if name in RAW else " %"))
        ax.set_title(task)
    for ax in axes[len(series):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _write_json(path: Path, obj: Any) -> Path:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def write_report(result: EvalResult, out_dir: str | Path) -> list[Path]:
    """Write every report file (see the module docstring) into ``out_dir`` (created if missing).

    Returns:
        The paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for task in result.tasks:
        runs = [{"shots": k, "metrics": result.by_shots[k][task], "predictions": result.records[k][task]}
                for k in result.shots if task in result.by_shots[k]]
        files.append(_write_json(out / f"{task}.json", {"task": task, "settings": result.settings, "results": runs}))
    summary = {"settings": result.settings, "metrics": {str(k): result.by_shots[k] for k in result.shots},
               "flat": result.flat()}
    files.append(_write_json(out / "summary.json", summary))
    charts = [p for p in (plot_attributes(result, out / "attributes.png"), plot_shots(result, out / "shots.png")) if p]
    s = result.settings
    head = [f"# Evaluation of {s.get('model', 'model')}", "",
            f"data: `{s.get('data')}` · format: {s.get('format')} · examples: {s.get('select')}"
            f"{' from `' + str(s['support']) + '`' if s.get('support') else ''} · seed: {s.get('seed')}"
            f" · limit: {s.get('limit') or 'none'} per task", "", result.table(), ""]
    head += [f"![{p.stem}]({p.name})" for p in charts]
    head += ["", "Every prediction next to its references: " + ", ".join(f"`{t}.json`" for t in result.tasks), ""]
    md = out / "report.md"
    md.write_text("\n".join(head), encoding="utf-8")
    return [*files, *charts, md]
