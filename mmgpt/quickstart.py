"""``mmgpt quickstart``: the whole pipeline on ShapesTones, sized for a 2-core CPU.

Generates the data, runs the training stages of the ``quickstart`` plan (``mmgpt/plans/``,
shipped with the package) one after the other (each from the previous stage's checkpoint), evaluates on the held-out test split,
shows held-out captions and a multi-turn chat, and saves ``runs/quickstart/final``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from mmgpt import resources
from mmgpt.config import apply_overrides, from_dict, read_yaml
from mmgpt.errors import ConfigError

PLAN = "quickstart"  # a shipped plan (mmgpt.resources)


@dataclass
class DataPlan:
    out: str = "data/shapestones"
    train: int = 20_000
    val: int = 400
    test: int = 1_000
    gen: int = 400
    seed: int = 0
    scene_lines: float = 8.0  # lines per generated scene: fewer = more distinct images and clips
    mix: dict[str, float] = field(default_factory=dict)  # task weights over the generator's defaults


@dataclass
class StagePlan:
    recipe: str
    overrides: list[str] = field(default_factory=list)


@dataclass
class EvalPlan:
    split: str = "test"
    limit: int = 200  # items per task
    batch_size: int = 64
    show: int = 3  # held-out images and clips to caption on screen


@dataclass
class QuickstartPlan:
    out_dir: str = "runs/quickstart"
    model: str = "quickstart"  # a preset: YAML path or shipped name
    data: DataPlan = field(default_factory=DataPlan)
    stages: list[StagePlan] = field(default_factory=list)
    eval: EvalPlan = field(default_factory=EvalPlan)
    threads: int | None = None
    steps_per_stage: int | None = None  # replaces every stage's max_steps (a smoke run: steps_per_stage=2)


def load_plan(path: str | Path = PLAN, overrides: list[str] | None = None) -> QuickstartPlan:
    """A plan (a YAML path or a shipped name) with ``key=value`` overrides.

    Raises:
        ConfigError: missing file, unknown key or bad value, or no stages.
    """
    plan = from_dict(QuickstartPlan, apply_overrides(read_yaml(path, "plan"), overrides))
    if not plan.stages:
        raise ConfigError(f"{path}: no stages")
    return plan


def _banner(text: str) -> None:
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


def run_stages(plan: QuickstartPlan, data: Path) -> tuple[Path, list[dict]]:
    """Train every stage in order; returns the last final model and per-stage statistics."""
    from mmgpt.train import TrainConfig, train

    previous: Path | None = None
    stats = []
    for i, stage in enumerate(plan.stages, 1):
        common = [f"out_dir={plan.out_dir}", f"data.train={data / 'train.jsonl'}", f"data.val={data / 'val.jsonl'}"]
        if plan.threads:
            common.append(f"threads={plan.threads}")
        start = [f"init_from={previous}"] if previous is not None else [f"model={plan.model}", "init_from=null"]
        cap = [f"max_steps={plan.steps_per_stage}"] if plan.steps_per_stage else []
        cfg = TrainConfig.from_yaml(stage.recipe, [*common, *start, *stage.overrides, *cap])
        _banner(f"stage {i}/{len(plan.stages)}: {cfg.stage} ({Path(stage.recipe).name})")
        t0 = time.time()
        previous = train(cfg)
        summary = json.loads((cfg.run_dir / "summary.json").read_text())
        stats.append({"stage": cfg.stage, "name": cfg.name, "seconds": time.time() - t0, **summary})
    return previous, stats


def show_examples(model, data: Path, plan: EvalPlan) -> None:
    """Caption a few held-out images and clips, then hold one multi-turn chat with both."""
    from mmgpt.datasets.readers import read_jsonl

    rows = [s for s in read_jsonl(data / f"{plan.split}.jsonl") if s.meta.get("task") in ("image_caption", "audio_caption")]
    _banner("held-out captions (model vs truth)")
    for task in ("image_caption", "audio_caption"):
        for s in [r for r in rows if r.meta["task"] == task][: plan.show]:
            seg = next(s.media())
            pred = model.caption(**{seg.type: seg.media}, max_new_tokens=64)
            mark = "ok " if pred == s.meta["answer"] else "XX "
            print(f"  {seg.media}\n    {mark}model: {pred}\n        truth: {s.meta['answer']}")
    chat = next(s for s in read_jsonl(data / f"{plan.split}.jsonl") if s.meta.get("task") == "chat")
    _banner("a multi-turn chat about a picture and a sound")
    history: list[dict] = []
    for turn in chat.to_messages():
        if turn["role"] != "user":
            continue
        history.append(turn)
        parts = [p.get("text") or f"[{p['type']}: {p[p['type']]}]" for p in turn["content"]]
        print("  user : " + " ".join(parts))
        answer = model.chat(history, max_new_tokens=32)
        print(f"  mmgpt: {answer}")
        history.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    print(f"  (truth: {' / '.join(chat.meta.get('answers', []))})")


def quickstart(plan: QuickstartPlan) -> dict:
    """Run the plan; returns the summary also written to ``<out_dir>/quickstart.json``."""
    import torch

    from mmgpt.eval import evaluate
    from mmgpt.model import load
    from mmgpt.precision import model_widths, resolve_precision
    from mmgpt.safe_io import atomic_dir

    t0 = time.time()
    if plan.threads:
        torch.set_num_threads(plan.threads)
    _banner(f"data: ShapesTones -> {plan.data.out}")
    data = ensure_data(plan.data)
    last, stages = run_stages(plan, data)
    out = Path(plan.out_dir)
    final = out / "final"
    with atomic_dir(final) as tmp:
        shutil.copytree(last, tmp, dirs_exist_ok=True)
    model = load(final).eval()
    _banner(f"evaluation on the held-out {plan.eval.split} split")
    amp = resolve_precision("auto", model.device, tokens=plan.eval.batch_size * 64, **model_widths(model))
    with torch.autocast(model.device.type, dtype=amp or torch.float32, enabled=amp is not None):
        result = evaluate(model, data / f"{plan.eval.split}.jsonl", limit=plan.eval.limit,
                          batch_size=plan.eval.batch_size, out_dir=out / "eval", name="quickstart")
        print(result.table())
        show_examples(model, data, plan.eval)
    wall = time.time() - t0
    summary = {"wall_seconds": wall, "stages": stages, "eval": result.flat(), "final": str(final),
               "parameters": model.num_parameters()}
    (out / "quickstart.json").write_text(json.dumps(summary, indent=1))
    _banner(f"done in {wall / 60:.1f} min; model saved to {final} ({model.num_parameters() / 1e6:.1f} M parameters)")
    print("  per stage: " + ", ".join(f"{s['stage']} {s['seconds']:.0f} s ({s['steps_per_s']:.2f} steps/s)"
                                     for s in stages))
    print(f"  reports:   {out / 'eval' / 'report.md'}, loss curves in {out}/<stage>/loss.png")
    sample = next((data / "media" / plan.eval.split).glob("*.png"), None)
    print("\nNext:")
    print(f"  mmgpt demo {final}    # chat with it in the browser (http://127.0.0.1:7860)")
    if sample is not None:
        print(f"  mmgpt caption {final} --image {sample} --audio {sample.with_suffix('.wav')}")
    print(f"  mmgpt eval {final} --data {data / 'gen.jsonl'} --shots 0,2   # held-out attribute combinations")
    return summary


def add_cli(p: argparse.ArgumentParser) -> None:
    p.description = ("Train the default model on the built-in ShapesTones data and show what it learned: "
                     "data generation, every training stage, held-out evaluation, captions and a chat.\n"
                     f"The plan is the shipped `{PLAN}` plan ({resources.plan(PLAN)}); change it with key=value "
                     "overrides, e.g. `mmgpt quickstart data.train=5000`, or give your own with --plan.")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of the quickstart plan")
    p.add_argument("--plan", default=PLAN, help="plan YAML, or a shipped plan's name (default: %(default)s)")

    def run(a: argparse.Namespace) -> int:
        quickstart(load_plan(a.plan, a.overrides))
        return 0

    p.set_defaults(run=run)
