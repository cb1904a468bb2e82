"""Training: one loop for every stage (text LM, contrastive encoders, alignment, interleaved,
instruction tuning), driven by YAML recipes; exact resume, LoRA, DDP / FSDP2."""

from mmgpt.train.config import TrainConfig


def train(cfg: TrainConfig):
    """Run one stage; returns the final model directory. See :mod:`mmgpt.train.trainer`."""
    from mmgpt.train.trainer import train as _train

    return _train(cfg)


__all__ = ["TrainConfig", "train"]
