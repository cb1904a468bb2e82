"""``mmgpt train CONFIG [key=value ...]``: run a training stage from a YAML recipe."""

from __future__ import annotations

import argparse


def add_cli(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Run a training stage from a YAML recipe (recipes/configs/*.yaml) with key=value overrides, e.g.\n"
        "  mmgpt train recipes/configs/stage1_align.yaml init_from=runs/text/final max_steps=200\n"
        "  mmgpt train recipes/configs/stage3_instruct.yaml lora.enabled=true\n"
        "  mmgpt train CONFIG resume=true          # continue from runs/<name>/checkpoints/latest\n"
        "  torchrun --nproc_per_node=2 -m mmgpt.cli train CONFIG   # DDP (gloo on CPU, NCCL on GPU)\n"
        "Writes runs/<name>/: metrics.jsonl, loss.png, summary.json, checkpoints/, final/."
    )
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("config", help="recipe YAML")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (dotted keys)")

    def run(a: argparse.Namespace) -> int:
        from mmgpt.train import TrainConfig, train

        cfg = TrainConfig.from_yaml(a.config, a.overrides)
        train(cfg)
        return 0

    p.set_defaults(run=run)
