"""Fixtures for training tests: a tiny ShapesTones set and a saved tiny base model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]
TINY = "tiny"  # a shipped preset, by name


@pytest.fixture(scope="session")
def st_data(tmp_path_factory) -> Path:
    from mmgpt.datasets.shapestones import generate

    out = tmp_path_factory.mktemp("shapestones")
    generate(out, train=160, val=24, test=0, gen=0, seed=3, progress=False)
    return out


@pytest.fixture(scope="session")
def base_ckpt(tmp_path_factory) -> Path:
    from mmgpt.model import MMGPT

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("base") / "tiny"
    MMGPT.from_config(TINY).save_pretrained(path)
    return path


def recipe(name: str) -> Path:
    """A shipped training recipe's file."""
    from mmgpt import resources

    return resources.recipe(name)


def overrides(data: Path, out: Path, **kw) -> list[str]:
    base = {"data.train": data / "train.jsonl", "data.val": data / "val.jsonl", "out_dir": out,
            "batch_size": 4, "max_steps": 2, "progress": "false", "threads": 1, "precision": "fp32",
            "log_every": 1}
    base.update(kw)
    return [f"{k}={v}" for k, v in base.items()]
