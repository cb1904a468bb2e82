"""``mmgpt pipeline PLAN.yaml``: from data files (or generated ShapesTones) to an evaluated model.

A plan names the data, the model preset and the stages; the pipeline runs the stages one
after the other (each from the previous stage's ``final/``), evaluates the last model on the
held-out file, prints the table and saves ``<out_dir>/final``. The data is either

* ``files``: your own train / val / test files in any format mmgpt reads, each with its media
  folder (COCO: ``annotations/captions_train2017.json`` + ``train2017/``), or
* ``data``: ShapesTones, generated (again only if its sizes or seed changed).

``mmgpt quickstart`` is this pipeline with the shipped ``quickstart`` plan, and shows a few
held-out captions and a chat at the end. ``recipes/pipelines/`` has plans to copy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mmgpt.config import apply_overrides, from_dict, read_yaml
from mmgpt.errors import ConfigError


@dataclass
class DataPlan:
    """ShapesTones to generate (used when the plan has no ``files``)."""

    out: str = "data/shapestones"
    train: int = 20_000
    val: int = 400
    test: int = 1_000
    gen: int = 400
    seed: int = 0
    scene_lines: float = 8.0  # lines per generated scene: fewer = more distinct images and clips
    mix: dict[str, float] = field(default_factory=dict)  # task weights over the generator's defaults


@dataclass
class FilesPlan:
    """Your own data files (any format mmgpt reads) and the folders their media paths are relative to."""

    train: str
    val: str | None = None
    test: str | None = None
    media_folder: str | None = None
    val_media_folder: str | None = None
    test_media_folder: str | None = None
    format: str = "auto"


@dataclass
class StagePlan:
    recipe: str  # a shipped recipe's name or a YAML path
    overrides: list[str] = field(default_factory=list)


@dataclass
class EvalPlan:
    split: str = "test"  # ShapesTones split; with files, the test file
    limit: int = 200  # items per task
    batch_size: int = 64
    shots: list[int] = field(default_factory=lambda: [0])  # in-context examples per query: one pass each
    show: int = 3  # quickstart: held-out images and clips to caption on screen


@dataclass
class Plan:
    """A pipeline: where runs go, the model preset, the data, the stages, the evaluation."""

    out_dir: str = "runs/pipeline"
    model: str = "quickstart"  # a preset: YAML path or shipped name
    data: DataPlan = field(default_factory=DataPlan)
    files: FilesPlan | None = None
    stages: list[StagePlan] = field(default_factory=list)
    eval: EvalPlan = field(default_factory=EvalPlan)
    threads: int | None = None
    steps_per_stage: int | None = None  # replaces every stage's max_steps (a smoke run: steps_per_stage=2)
    # max_steps of named stages (recipe name -> steps), after the stage's own overrides:
    # `mmgpt quickstart max_steps.stage3_instruct=2000`; steps_per_stage still wins.
    max_steps: dict[str, int] = field(default_factory=dict)
    # One seed for the generated data and every stage's initialisation and sample order (None:
    # data.seed and the recipes' own seeds, 0).
    seed: int | None = None
    precision: str | None = None  # auto / bf16 / fp32 for every stage and the evaluation (None: auto)


def load_plan(path: str | Path, overrides: list[str] | None = None) -> Plan:
    """A plan (a YAML path or a shipped plan's name) with ``key=value`` overrides.

    Raises:
        ConfigError: missing file, unknown key or bad value, or no stages.
    """
    plan = from_dict(Plan, apply_overrides(read_yaml(path, "plan"), overrides))
    if not plan.stages:
        raise ConfigError(f"{path}: no stages")
    if plan.precision not in (None, "auto", "bf16", "fp32"):
        raise ConfigError(f"{path}: precision must be auto, bf16 or fp32, got {plan.precision!r}")
    unknown = sorted(set(plan.max_steps) - {Path(st.recipe).stem for st in plan.stages})
    if unknown:
        raise ConfigError(f"{path}: max_steps names no stage of the plan: {', '.join(unknown)}")
    if plan.seed is not None:
        plan.data.seed = plan.seed
    return plan


def banner(text: str) -> None:
    print(f"\n== {text}", flush=True)


def ensure_data(plan: DataPlan) -> Path:
    """Generate ShapesTones unless the same data (same sizes and seed) is already there."""
    from mmgpt.datasets.shapestones import generate

    out = Path(plan.out)
    stamp = out / "quickstart.json"
    want = {"train": plan.train, "val": plan.val, "test": plan.test, "gen": plan.gen, "seed": plan.seed,
            "scene_lines": plan.scene_lines, "mix": plan.mix}
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        print(f"using existing {out}")
        return out
    if out.exists():
        shutil.rmtree(out)
    info = generate(out, **want)
    stamp.write_text(json.dumps(want))
    print(f"generated {sum(s['samples'] for s in info['splits'].values())} samples in {info['seconds']:.1f} s")
    return out


def data_overrides(plan: Plan, generated: Path | None) -> list[str]:
    """The ``data.*`` overrides every stage gets: the plan's files, or the generated ShapesTones."""
    if plan.files is None:
        return [f"data.train={generated / 'train.jsonl'}", f"data.val={generated / 'val.jsonl'}"]
    f = plan.files
    out = [f"data.train={f.train}", f"data.val={f.val or 'null'}", f"data.format={f.format}"]
    out += [f"data.{k}={v}" for k, v in (("media_folder", f.media_folder), ("val_media_folder", f.val_media_folder))
            if v is not None]
    return out


def stage_overrides(plan: Plan, stage: StagePlan, generated: Path | None, previous: Path | None) -> list[str]:
    """The overrides of one stage's recipe: the plan's places, data, threads, seed and precision,
    where it starts (the previous stage's model, or the preset), then the stage's own."""
    common = [f"out_dir={plan.out_dir}", *data_overrides(plan, generated)]
    if plan.threads:
        common.append(f"threads={plan.threads}")
    common += [f"{k}={v}" for k, v in (("seed", plan.seed), ("precision", plan.precision)) if v is not None]
    start = [f"init_from={previous}"] if previous is not None else [f"model={plan.model}", "init_from=null"]
    steps = plan.steps_per_stage or plan.max_steps.get(Path(stage.recipe).stem)
    cap = [f"max_steps={steps}"] if steps else []
    return [*common, *start, *stage.overrides, *cap]


def run_stages(plan: Plan, generated: Path | None) -> tuple[Path, list[dict]]:
    """Train every stage in order; returns the last final model and per-stage statistics."""
    from mmgpt.train import TrainConfig, train

    previous: Path | None = None
    stats = []
    for i, stage in enumerate(plan.stages, 1):
        cfg = TrainConfig.from_yaml(stage.recipe, stage_overrides(plan, stage, generated, previous))
        banner(f"stage {i}/{len(plan.stages)}: {cfg.stage} ({Path(stage.recipe).name})")
        t0 = time.time()
        previous = train(cfg)
        summary = json.loads((cfg.run_dir / "summary.json").read_text())
        stats.append({"stage": cfg.stage, "name": cfg.name, "seconds": time.time() - t0, **summary})
    return previous, stats


def evaluate_final(model, plan: Plan, generated: Path | None, name: str):
    """The eval harness on the held-out file (the plan's test file, or a ShapesTones split), under
    the autocast that measures fastest here; None when the plan has no held-out file."""
    import torch

    from mmgpt.eval import evaluate
    from mmgpt.precision import model_widths, resolve_precision

    if plan.files is not None:
        data, folder = plan.files.test, plan.files.test_media_folder or plan.files.media_folder
    else:
        data, folder = generated / f"{plan.eval.split}.jsonl", None
    if data is None:
        return None
    amp = resolve_precision(plan.precision or "auto", model.device, tokens=plan.eval.batch_size * 64, **model_widths(model))
    with torch.autocast(model.device.type, dtype=amp or torch.float32, enabled=amp is not None):
        return evaluate(model, data, limit=plan.eval.limit, batch_size=plan.eval.batch_size, media_folder=folder,
                        shots=plan.eval.shots,
                        support=generated / "train.jsonl" if generated and max(plan.eval.shots) > 0 else None,
                        out_dir=Path(plan.out_dir) / "eval", name=name)


def run_pipeline(plan: Plan, name: str = "pipeline", after: Callable | None = None) -> dict:
    """Run the plan: data, stages, ``final/``, evaluation; ``after(model, generated_data_dir)`` is
    called last (quickstart shows examples there). Returns the summary also written to
    ``<out_dir>/<name>.json``."""
    import torch

    from mmgpt.model import load
    from mmgpt.safe_io import atomic_dir

    t0 = time.time()
    if plan.threads:
        torch.set_num_threads(plan.threads)
    generated = None
    if plan.files is None:
        banner(f"data: ShapesTones -> {plan.data.out}")
        generated = ensure_data(plan.data)
    else:
        banner(f"data: {plan.files.train} (media in {plan.files.media_folder or 'the data file folder'})")
    last, stages = run_stages(plan, generated)
    out = Path(plan.out_dir)
    final = out / "final"
    with atomic_dir(final) as tmp:
        shutil.copytree(last, tmp, dirs_exist_ok=True)
    model = load(final).eval()
    result = evaluate_final(model, plan, generated, name)
    if result is not None:
        banner("evaluation on the held-out data")
        print(result.table())
    if after is not None:
        after(model, generated)
    wall = time.time() - t0
    summary = {"wall_seconds": wall, "stages": stages, "eval": result.flat() if result else {},
               "final": str(final), "parameters": model.num_parameters()}
    (out / f"{name}.json").write_text(json.dumps(summary, indent=1))
    banner(f"done in {wall / 60:.1f} min; model saved to {final} ({model.num_parameters() / 1e6:.1f} M parameters)")
    print("  per stage: " + ", ".join(f"{s['stage']} {s['seconds']:.0f} s ({s['steps_per_s']:.2f} steps/s)"
                                     for s in stages))
    if result is not None:
        print(f"  reports:   {out / 'eval' / 'report.md'}, loss curves in {out}/<stage>/loss.png")
    return summary


def add_cli(p: argparse.ArgumentParser) -> None:
    """Arguments of ``mmgpt pipeline``."""
    p.description = ("Run a plan: every training stage one after the other on your files (or ShapesTones), "
                     "then the held-out evaluation; saves <out_dir>/final.\n"
                     "  mmgpt pipeline recipes/pipelines/image_captioner.yaml\n"
                     "  mmgpt pipeline my_plan.yaml files.train=annotations/captions_train2017.json "
                     "files.media_folder=train2017 model=small")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("plan", help="plan YAML, or a shipped plan's name")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of the plan (dotted keys)")

    def run(a: argparse.Namespace) -> int:
        run_pipeline(load_plan(a.plan, a.overrides), name=Path(a.plan).stem)
        return 0

    p.set_defaults(run=run)
