"""Run metrics: one JSON object per line in ``metrics.jsonl``, a loss/accuracy plot PNG, ``summary.json``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mmgpt.safe_io import atomic_write_text


class MetricsLog:
    """Appends records to ``run_dir/metrics.jsonl`` (flushed each line, so a crash loses nothing).

    A file already there is never truncated: it is copied to ``metrics.jsonl.N`` (the next free N)
    and then replaced atomically, so ``metrics.jsonl`` exists at every moment.
    On resume at step ``resume_at`` the new file starts with the old records up to that step
    (those after it will be produced again; a line cut by a kill is left in the moved file).
    """

    def __init__(self, run_dir: Path, enabled: bool = True, resume_at: int | None = None) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        if not self.path.exists() or not self.path.stat().st_size:
            self.path.write_text("")
            return
        n = 1
        while self.path.with_name(f"{self.path.name}.{n}").exists():
            n += 1
        moved = self.path.with_name(f"{self.path.name}.{n}")
        # Copied, then replaced: metrics.jsonl exists at every moment (a reader polling it, or a
        # kill between the two writes, never finds it missing; at worst the history is kept twice).
        old = self.path.read_text()
        atomic_write_text(moved, old)
        keep = []
        if resume_at is not None:
            for line in old.splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_at:
                        keep.append(line)
                except (json.JSONDecodeError, AttributeError):
                    continue
        atomic_write_text(self.path, "".join(line + "\n" for line in keep))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def plot_metrics(records: list[dict[str, Any]], path: Path, title: str = "") -> Path | None:
    """Training loss (and validation loss / accuracies when logged) against step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train" and math.isfinite(r.get("loss", 0))]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    acc_keys = sorted({k for r in records for k in r if k.startswith("eval/") and k.endswith("accuracy")})
    if not train:
        return None
    fig, ax = plt.subplots(1, 2 if acc_keys else 1, figsize=(11 if acc_keys else 6, 4), squeeze=False)
    a = ax[0][0]
    a.plot(*zip(*train), label="train loss", lw=1)
    if val:
        a.plot(*zip(*val), "o-", label="val loss")
    a.set_xlabel("step")
    a.set_ylabel("loss")
    a.set_yscale("log")
    a.grid(alpha=0.3)
    a.legend()
    a.set_title(title or "loss")
    if acc_keys:
        b = ax[0][1]
        for k in acc_keys:
            pts = [(r["step"], r[k]) for r in records if k in r]
            b.plot(*zip(*pts), "o-", label=k.removeprefix("eval/"))
        b.set_xlabel("step")
        b.set_ylabel("accuracy")
        b.set_ylim(0, 1.02)
        b.grid(alpha=0.3)
        b.legend(fontsize=7)
        b.set_title("held-out accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def summarise(records: list[dict[str, Any]], run_dir: Path, stage: str, name: str, stats: dict[str, Any]) -> dict:
    """Write ``loss.png`` and ``summary.json`` (stage, final train and validation loss, ``stats``)."""
    plot_metrics(records, run_dir / "loss.png", title=f"{name} ({stage})")
    last = [r for r in records if r.get("kind") == "train"]
    val = [r for r in records if r.get("kind") == "val"]
    summary = {"stage": stage, "final_loss": last[-1]["loss"] if last else None,
               "val_loss": val[-1]["val_loss"] if val else None, **stats}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
