"""``mmgpt quickstart``: the whole pipeline on ShapesTones, sized for a 2-core CPU.

The shipped ``quickstart`` plan (``mmgpt/plans/quickstart.yaml``) run by the pipeline
(:mod:`mmgpt.pipeline`, the same stage runner as ``mmgpt pipeline``): generate the data, run
the training stages one after the other, evaluate on the held-out test split, then show
held-out captions and a multi-turn chat, and save ``runs/quickstart/final``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmgpt import resources
from mmgpt.errors import ConfigError
from mmgpt.pipeline import EvalPlan, Plan, banner, load_plan, run_pipeline

PLAN = "quickstart"  # a shipped plan (mmgpt.resources)
QuickstartPlan = Plan


def show_examples(model, data: Path, plan: EvalPlan) -> None:
    """Caption a few held-out images and clips, then hold one multi-turn chat with both."""
    from mmgpt.datasets.readers import read_jsonl

    rows = [s for s in read_jsonl(data / f"{plan.split}.jsonl") if s.meta.get("task") in ("image_caption", "audio_caption")]
    banner("held-out captions (model vs truth)")
    for task in ("image_caption", "audio_caption"):
        for s in [r for r in rows if r.meta["task"] == task][: plan.show]:
            seg = next(s.media())
            pred = model.caption(**{seg.type: seg.media}, max_new_tokens=64)
            mark = "ok " if pred == s.meta["answer"] else "XX "
            print(f"  {seg.media}\n    {mark}model: {pred}\n        truth: {s.meta['answer']}")
    chat = next(s for s in read_jsonl(data / f"{plan.split}.jsonl") if s.meta.get("task") == "chat")
    banner("a multi-turn chat about a picture and a sound")
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



def quickstart(plan: Plan) -> dict:
    """Run the plan, show examples; returns the summary also written to ``<out_dir>/quickstart.json``."""
    def after(model, data: Path) -> None:
        show_examples(model, data, plan.eval)
        final = Path(plan.out_dir) / "final"
        sample = next((data / "media" / plan.eval.split).glob("*.png"), None)
        print("\nNext:")
        print(f"  mmgpt demo {final}    # chat with it in the browser (http://127.0.0.1:7860)")
        if sample is not None:
            print(f"  mmgpt caption {final} --image {sample} --audio {sample.with_suffix('.wav')}")
        print(f"  mmgpt eval {final} --data {data / 'gen.jsonl'} --shots 0,2   # held-out attribute combinations")

    if plan.files is not None:
        raise ConfigError("the quickstart plan trains on ShapesTones; for your own files use `mmgpt pipeline`")
    return run_pipeline(plan, name="quickstart", after=after)


def add_cli(p: argparse.ArgumentParser) -> None:
    """Arguments of ``mmgpt quickstart``."""
    p.description = ("Train the default model on the built-in ShapesTones data and show what it learned: "
                     "data generation, every training stage, held-out evaluation, captions and a chat.\n"
                     f"The plan is the shipped `{PLAN}` plan ({resources.plan(PLAN)}); change it with key=value "
                     "overrides, e.g. `mmgpt quickstart data.train=5000` or `max_steps.stage3_instruct=1000`, "
                     "or give your own with --plan. `--plan quickstart_full` is the same plan with 2000 "
                     "instruction steps instead of 600 (runs/quickstart_full; figures in BENCHMARKS.md).")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of the quickstart plan")
    p.add_argument("--plan", default=PLAN, help="plan YAML, or a shipped plan's name (default: %(default)s)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the generated data and of every stage's initialisation and sample order "
                        "(default: the plan's, 0)")

    def run(a: argparse.Namespace) -> int:
        overrides = [*a.overrides, *([f"seed={a.seed}"] if a.seed is not None else [])]
        quickstart(load_plan(a.plan, overrides))
        return 0

    p.set_defaults(run=run)
