"""LoRA on the decoder through ``peft``, and merging it back for saving."""

from __future__ import annotations

import logging
from pathlib import Path

from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model

from mmgpt.errors import ConfigError
from mmgpt.train.config import LoraConfig

log = logging.getLogger(__name__)


def apply_lora(model, cfg: LoraConfig) -> None:
    """Wrap ``model.decoder`` with LoRA adapters; only they (and parts trained on purpose) learn.

    The decoder's own weights are frozen by peft; adapters and encoders keep the trainable
    flags the stage gave them.
    """
    peft_cfg = PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                              target_modules=list(cfg.target_modules), bias="none")
    model.decoder = get_peft_model(model.decoder, peft_cfg)
    n = sum(p.numel() for p in model.decoder.parameters() if p.requires_grad)
    log.info("LoRA r=%d on %s: %d trainable decoder parameters", cfg.r, ", ".join(cfg.target_modules), n)


def save_lora_adapter(model, path: Path) -> Path:
    """Write the decoder's LoRA adapter to ``path`` in peft's format (``adapter_config.json``,
    ``adapter_model.safetensors``; atomically) and unwrap the decoder without merging, so the
    model saves as the base it was trained on. Load it back onto that base's decoder with
    ``peft.PeftModel.from_pretrained(mmgpt.load(final).decoder, path)``."""
    from mmgpt.safe_io import atomic_dir

    if not isinstance(model.decoder, PeftModel):
        raise ConfigError("lora.merge_on_save=false: the decoder has no LoRA adapter to save")
    with atomic_dir(path) as tmp:
        model.decoder.save_pretrained(str(tmp), safe_serialization=True)
    model.decoder = model.decoder.unload()
    return path


def merge_lora(model) -> None:
    """Fold LoRA weights into the decoder and drop the wrappers (a no-op without LoRA)."""
    if isinstance(model.decoder, PeftModel):
        model.decoder = model.decoder.merge_and_unload()
