"""Feature cache: stage-1 epoch time with cached frozen-encoder features vs encoding on the fly.

Two stage-1 (``align``) trainers, identical but for ``feature_cache``: encoders and decoder are
frozen, the adapters learn, on ShapesTones image and audio captions (each caption with its own
image or clip). A measured unit is one whole epoch as the trainer runs it, media decoding
included. The cached side's warm-up epoch fills the cache (excluded, as a first epoch would
be); its timed epochs read features from it, while the other side runs both encoders every
time. Forward hooks on the encoders time them, so the report can say how much of an epoch the
encoders are, which bounds what any cache can save: epoch / (epoch - encoder time).
"""

from __future__ import annotations

import time
from pathlib import Path

from mmgpt.bench.peers import preset_path
from mmgpt.bench.timing import Settings, SideFactory
from mmgpt.bench.training import build_trainer, ensure_shapestones, run_steps

MIX = {"image_caption": 1.0, "audio_caption": 1.0, "image_qa": 0.0, "audio_qa": 0.0, "crossmodal_qa": 0.0,
       "chat": 0.0, "document": 0.0}
SIZES = {False: {"preset": "quickstart", "samples": 256, "batch_size": 32},
         True: {"preset": "tiny", "samples": 16, "batch_size": 8}}


def sides(settings: Settings) -> dict[str, SideFactory]:
    """``cached`` and ``on_the_fly`` stage-1 epoch factories."""
    size = SIZES[settings.quick]
    work = Path(settings.workdir)
    train = ensure_shapestones(work / "shapestones_captions", size["samples"], settings.seed, MIX, scene_lines=2.0)

    def make(side: str):
        def factory():
            trainer = build_trainer(work, f"cache-{side}", preset_path(size["preset"]), train, settings,
                                    stage="align", batch_size=size["batch_size"], feature_cache=side == "cached", train_tokenizer=True,
                                    optim={"warmup_steps": 0})
            steps = range(trainer.schedule.steps_per_epoch)
            clock = EncoderClock(trainer.model.encoders.values())
            info = {"preset": size["preset"], "samples": size["samples"], "batch_size": size["batch_size"],
                    "steps_per_epoch": len(steps), "precision": str(trainer.amp or "fp32"),
                    "feature_cache": side == "cached"}

            def step() -> dict[str, float]:
                clock.seconds = 0.0
                counts = run_steps(trainer, steps)
                hits = sum(c.hits for c in trainer.objective.caches.values())
                return {"useful_tokens": counts["useful_tokens"], "cache_hits_total": hits, "encoder_s": clock.seconds}

            return step, info

        return factory

    return {"cached": make("cached"), "on_the_fly": make("on_the_fly")}


class EncoderClock:
    """Sums the wall time spent inside the given modules' forward calls (forward hooks)."""

    def __init__(self, modules) -> None:
        self.seconds = 0.0
        self._start: dict[int, float] = {}
        for m in modules:
            m.register_forward_pre_hook(self._pre)
            m.register_forward_hook(self._post)

    def _pre(self, module, args) -> None:
        self._start[id(module)] = time.perf_counter()

    def _post(self, module, args, output) -> None:
        self.seconds += time.perf_counter() - self._start.pop(id(module), time.perf_counter())
