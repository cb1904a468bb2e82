"""Packing: useful (non-pad) tokens/s of training on mixed-length interleaved ShapesTones data.

Three trainers, identical but for ``data.batching``: ``pack`` (several samples per row of
``max_len`` tokens, block-diagonal causal mask), ``pad`` (one sample per row, random order)
and ``group`` (one sample per row, LLaVA-style length grouping). Each runs the same samples in
the same number of steps (stage ``instruct``: adapters + decoder train, frozen encoders'
features cached). A measured unit is one epoch; processed samples are kept in memory after the
warm-up epoch, so the timing is the batching and the model, not PNG/WAV decoding, which is the
same for all three. Useful tokens are real tokens of the samples; the padding fraction is
1 - useful / (rows x row length), over the epoch.
"""

from __future__ import annotations

from pathlib import Path

from mmgpt.bench.peers import preset_path
from mmgpt.bench.timing import Settings, SideFactory
from mmgpt.bench.training import Memo, build_trainer, ensure_shapestones, run_steps

# Interleaved documents and multi-turn chats next to short captions and QA: lengths from ~60 to
# the 384-token context of the quickstart model.
MIX = {"document": 2.0, "chat": 2.0}
SIZES = {False: {"preset": "quickstart", "samples": 256, "batch_size": 16},
         True: {"preset": "tiny", "samples": 16, "batch_size": 8}}
MODES = {"packed": "pack", "padded": "pad", "grouped": "group"}


def sides(settings: Settings) -> dict[str, SideFactory]:
    """``packed``, ``padded`` and ``grouped`` epoch factories."""
    size = SIZES[settings.quick]
    work = Path(settings.workdir)
    train = ensure_shapestones(work / "shapestones_mixed", size["samples"], settings.seed, MIX)

    def make(side: str):
        def factory():
            trainer = build_trainer(work, f"packing-{side}", preset_path(size["preset"]), train, settings,
                                    stage="instruct", batch_size=size["batch_size"], train_tokenizer=True,
                                    data={"batching": MODES[side]}, optim={"warmup_steps": 0})
            trainer.data = Memo(trainer.data)
            steps = range(trainer.schedule.steps_per_epoch)
            info = {"preset": size["preset"], "samples": size["samples"], "batch_size": size["batch_size"],
                    "steps_per_epoch": len(steps), "max_len": trainer.objective.max_len, "batching": MODES[side],
                    "precision": str(trainer.amp or "fp32"), "mix": MIX}

            def step() -> dict[str, float]:
                counts = run_steps(trainer, steps)
                return {"useful_tokens": counts["useful_tokens"], "slots": counts["slots"],
                        "padding_fraction": 1 - counts["useful_tokens"] / max(counts["slots"], 1)}

            return step, info

        return factory

    return {name: make(name) for name in MODES}
