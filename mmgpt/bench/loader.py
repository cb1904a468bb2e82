"""Data workers: steps/s with batches built in 2 worker processes vs in the training process.

Two stage-1 (``align``) trainers, identical but for ``data.num_workers`` (2 vs 0), on ShapesTones
image and audio captions whose pictures are large PNGs (768 px, resized to the encoder's 64),
with the feature cache off, so that reading and decoding cost about as much as the step
itself. A measured unit is ``steps`` steps through the trainer's own loader (workers start
with the unit, as at the start of a run). Same batches, same order, bitwise the same losses
(tests/mmgpt/train/test_loader.py); only where the decoding runs differs.
"""

from __future__ import annotations

from pathlib import Path

from mmgpt.bench.peers import preset_path
from mmgpt.bench.timing import Settings, SideFactory
from mmgpt.bench.training import build_trainer, ensure_shapestones

MIX = {"image_caption": 3.0, "audio_caption": 1.0, "image_qa": 0.0, "audio_qa": 0.0, "crossmodal_qa": 0.0,
       "chat": 0.0, "document": 0.0}
SIZES = {False: {"preset": "quickstart", "samples": 640, "batch_size": 32, "image_size": 768, "steps": 10},
         True: {"preset": "tiny", "samples": 32, "batch_size": 8, "image_size": 128, "steps": 2}}
SIDES = {"workers_2": 2, "workers_0": 0}


def sides(settings: Settings) -> dict[str, SideFactory]:
    """``workers_2`` and ``workers_0`` factories: ``steps`` training steps each."""
    size = SIZES[settings.quick]
    work = Path(settings.workdir)
    train = ensure_shapestones(work / "shapestones_large_images", size["samples"], settings.seed, MIX,
                               scene_lines=1.0, image_size=size["image_size"])

    def make(side: str):
        def factory():
            trainer = build_trainer(work, f"loader-{side}", preset_path(size["preset"]), train, settings,
                                    stage="align", batch_size=size["batch_size"], feature_cache=False,
                                    train_tokenizer=True, optim={"warmup_steps": 0},
                                    data={"num_workers": SIDES[side]})
            steps = size["steps"]
            info = {"preset": size["preset"], "samples": size["samples"], "batch_size": size["batch_size"],
                    "image_size": size["image_size"], "steps": steps, "num_workers": SIDES[side],
                    "precision": "bf16" if trainer.amp else "fp32"}

            def step() -> dict[str, float]:
                for _, batches, _ in trainer.loader.steps(0, steps):
                    trainer.step(batches)
                return {"steps": float(steps)}

            return step, info

        return factory

    return {name: make(name) for name in SIDES}
