"""The decoder: any transformers causal LM, loaded from a directory or built from a config."""

from __future__ import annotations

import json
import logging

from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from mmgpt.config import DecoderConfig
from mmgpt.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)
_DROP = ("_attn_implementation", "transformers_version", "architectures", "torch_dtype", "dtype", "_name_or_path")


def build_decoder(cfg: DecoderConfig, vocab_size: int, max_length: int, special: dict[str, int],
                  load_weights: bool = True) -> PreTrainedModel:
    """Build the decoder and size its embeddings for ``vocab_size`` tokens.

    Args:
        cfg: decoder settings. With ``pretrained_path`` (and ``load_weights``) the model is
            ``AutoModelForCausalLM.from_pretrained(path)``; with ``hf_config`` it is built from
            that full config; otherwise a ``model_type`` config of the given sizes.
        vocab_size: tokenizer length; embeddings are resized to it when they differ.
        max_length: context length, used for ``max_position_embeddings`` of a fresh config.
        special: ids of ``eos`` and ``pad``, written into the model config.
        load_weights: read pretrained weights (off when an mmgpt checkpoint carries them).

    Raises:
        CheckpointError: the pretrained model cannot be loaded.
        ConfigError: ``model_type`` or ``hf_config`` is not a valid transformers config.
    """
    attn = cfg.attn_implementation
    if cfg.pretrained_path and load_weights:
        try:
            model = AutoModelForCausalLM.from_pretrained(cfg.pretrained_path, attn_implementation=attn, dtype="float32",
                                                         use_safetensors=True)
        except (OSError, ValueError, KeyError) as e:
            raise CheckpointError(f"cannot load decoder from {cfg.pretrained_path}: {e}") from e
        log.info("loaded decoder %s from %s", type(model).__name__, cfg.pretrained_path)
    else:
        try:
            if cfg.hf_config:
                data = dict(cfg.hf_config)
                hf_cfg = AutoConfig.for_model(data.pop("model_type"), **data)
            elif cfg.pretrained_path:  # the architecture only, weights come from the mmgpt checkpoint
                hf_cfg = AutoConfig.from_pretrained(cfg.pretrained_path, local_files_only=True)
            else:
                hf_cfg = AutoConfig.for_model(
                    cfg.model_type, vocab_size=vocab_size, hidden_size=cfg.hidden_size,
                    intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
                    num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads or cfg.num_heads,
                    max_position_embeddings=max_length, rope_theta=cfg.rope_theta,
                    tie_word_embeddings=cfg.tie_word_embeddings, bos_token_id=None,
                    eos_token_id=special["eos"], pad_token_id=special["pad"],
                )
        except (KeyError, ValueError, TypeError, OSError) as e:
            raise ConfigError(f"decoder: cannot build a {cfg.model_type!r} config: {e}") from e
        model = AutoModelForCausalLM.from_config(hf_cfg, attn_implementation=attn)
    if model.get_input_embeddings().num_embeddings != vocab_size:
        model.resize_token_embeddings(vocab_size, mean_resizing=False)
    model.config.pad_token_id = special["pad"]
    model.config.use_cache = False  # training default; generation asks for the cache itself
    return model


def export_config(model: PreTrainedModel) -> dict:
    """The decoder's full transformers config as plain data, so a checkpoint reloads alone."""
    data = json.loads(model.config.to_json_string(use_diff=False))
    for k in _DROP:
        data.pop(k, None)
    data["model_type"] = model.config.model_type
    return data
