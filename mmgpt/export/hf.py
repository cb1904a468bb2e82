"""``--format hf``: any mmgpt model as transformers classes of ``model_type: "mmgpt"`` (:mod:`mmgpt.hf`).

Every mmgpt model maps (images, audio, any adapter, any decoder). The folder holds the weights
(``model.safetensors``, the names of :class:`~mmgpt.hf.MMGPTForConditionalGeneration`),
``config.json`` (the mmgpt config inlined), ``generation_config.json`` (mmgpt's stop tokens),
the processor (``processor_config.json``, the tokenizer with a chat template that keeps typed
special tokens plain text, :mod:`mmgpt.export.template`) and a ``README.md`` model card. It
loads with transformers' Auto classes once ``mmgpt`` is imported (which registers the classes).
"""

from __future__ import annotations

from pathlib import Path


def export(model, out: Path) -> list[str]:
    """Write the folder into ``out`` (a fresh temporary folder); returns what it wrote."""
    from mmgpt.export.template import plain_text_tokenizer
    from mmgpt.hf import MMGPTForConditionalGeneration, MMGPTProcessor

    wrapped = MMGPTForConditionalGeneration.from_mmgpt(model)
    wrapped.save_pretrained(str(out))
    cfg = model.config.tokenizer
    tok = plain_text_tokenizer(model.tokenizer, cfg.prefix_space, cfg.media_after_text)
    MMGPTProcessor(tokenizer=tok, mmgpt=wrapped.config.mmgpt, chat_template=tok.chat_template).save_pretrained(str(out))
    return sorted(p.name for p in out.iterdir())
