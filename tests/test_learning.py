"""A shortened quickstart plan still learns: its held-out figures stay above stated floors (slow).

The plan is the shipped quickstart plan with less data and fewer steps per stage (about 5 min on
an idle 2-core CPU). Floors: measured figures minus a margin for seed and host (see ``FLOORS``), so
a change that breaks learning (data, losses, masks, the encoders' pretraining) fails here.
"""

from __future__ import annotations

import pytest

STEPS = {"stage0a_text": 40, "stage0b_contrastive": 150, "stage1_align": 150, "stage2_interleaved": 10,
         "stage3_instruct": 200}
# held-out figure -> floor. Measured on the 2-core Intel Xeon host (bf16), seed 0, 2026-12-01:
# audio QA 100 %, audio caption attributes 100 %, image caption attributes 80.4 % (50 items each).
FLOORS = {("audio_qa", "accuracy"): 0.90, ("audio_caption", "attribute_accuracy"): 0.90,
          ("image_caption", "attribute_accuracy"): 0.70}


@pytest.mark.slow
def test_a_shortened_quickstart_plan_reaches_its_floors(tmp_path):
    from mmgpt.pipeline import load_plan, run_pipeline

    plan = load_plan("quickstart", [f"out_dir={tmp_path / 'run'}", f"data.out={tmp_path / 'data'}", "data.train=3000",
                                    "data.val=100", "data.test=300", "data.gen=0", "eval.limit=50", "threads=2",
                                    *(f"max_steps.{name}={n}" for name, n in STEPS.items())])
    summary = run_pipeline(plan, name="learning")
    figures = {key: summary["eval"][f"{key[0]}/{key[1]}"] for key in FLOORS}
    print(figures)
    assert all(figures[key] >= floor for key, floor in FLOORS.items()), figures
