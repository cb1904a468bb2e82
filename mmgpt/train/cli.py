"""``mmgpt train RECIPE [key=value ...]``: run a training stage from a YAML recipe."""

from __future__ import annotations

import argparse


def add_cli(p: argparse.ArgumentParser) -> None:
    """Arguments of ``mmgpt train``."""
    from mmgpt import resources

    p.description = (
        "Run a training stage from a recipe (a YAML file, or a shipped recipe's name) with key=value overrides:\n"
        "  mmgpt train stage1_align init_from=runs/stage0b_contrastive/final max_steps=200\n"
        "  mmgpt train stage3_instruct lora.enabled=true\n"
        "  mmgpt train my_recipe.yaml                  # yours; `base: stage3_instruct` starts from a shipped one\n"
        "  mmgpt train RECIPE resume=true              # continue from runs/<name>/checkpoints/latest\n"
        "  mmgpt train RECIPE [key=value ...] --print > my.yaml   # the resolved config, to copy and edit\n"
        "  torchrun --nproc_per_node=2 -m mmgpt.cli train RECIPE   # DDP (gloo on CPU, NCCL on GPU)\n"
        f"Shipped recipes: {', '.join(resources.shipped('recipe'))}; model presets (model=NAME): "
        f"{', '.join(resources.shipped('preset'))}.\n"
        "Writes runs/<name>/: metrics.jsonl, loss.png, summary.json, checkpoints/, final/."
    )
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("config", metavar="RECIPE", help="recipe YAML, or a shipped recipe's name")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (dotted keys)")
    p.add_argument("--print", action="store_true", help="print the resolved config as YAML and exit")

    def run(a: argparse.Namespace) -> int:
        import yaml

        from mmgpt.train import TrainConfig, train

        cfg = TrainConfig.from_yaml(a.config, a.overrides)
        if a.print:
            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
            return 0
        train(cfg)
        return 0

    p.set_defaults(run=run)
