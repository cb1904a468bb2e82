"""Value checks of model configs: the ranges a size may take, the timm arguments a config may
pass, weight files safetensors only. A checkpoint's config.json is data a stranger wrote: every
value is checked here before anything is built, and a bad one is a ConfigError naming its key."""

from __future__ import annotations

from typing import Any

from mmgpt.errors import ConfigError

# Sizes a config may hold: generous for real models, small enough that a hostile or garbled
# config.json fails here with the key named, not in an allocation.
MAX_WIDTH = 65_536
MAX_LAYERS = 1_024
MAX_VOCAB = 4_194_304
MAX_CONTEXT = 4_194_304
# timm.create_model keyword arguments a config may pass (architecture only: nothing that names
# a file, a URL or a cache, which would make timm read from disk or the network).
TIMM_KWARGS = frozenset({
    "drop_rate", "drop_path_rate", "attn_drop_rate", "proj_drop_rate", "pos_drop_rate", "patch_drop_rate",
    "class_token", "global_pool", "no_embed_class", "qkv_bias", "qk_norm", "init_values", "dynamic_img_size",
    "dynamic_img_pad", "in_chans", "fc_norm", "pre_norm", "final_norm", "act_layer", "weight_init", "pos_embed",
    "mlp_ratio", "reg_tokens", "embed_dim", "depth", "num_heads", "patch_size", "stem_type", "stem_chs",
    "layers", "output_stride", "use_rot_pos_emb", "use_abs_pos_emb", "ref_feat_shape", "scale_mlp", "swiglu_mlp",
})
DECODER_HF_SIZES = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                    "num_key_value_heads", "vocab_size", "max_position_embeddings", "head_dim")
AUDIO_HF_SIZES = ("d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim", "num_mel_bins",
                  "max_source_positions", "decoder_layers", "decoder_attention_heads", "decoder_ffn_dim",
                  "vocab_size", "max_target_positions")


def check_int(key: str, value: Any, lo: int = 1, hi: int = MAX_WIDTH) -> None:
    """``value`` (None allowed) is an integer in ``[lo, hi]``.

    Raises:
        ConfigError: naming ``key``.
    """
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{key} must be an integer from {lo} to {hi:,}, got {value!r}")


def check_divides(key: str, width: int | None, heads_key: str, heads: int | None) -> None:
    if width is not None and heads is not None and width % heads:
        raise ConfigError(f"{key} ({width}) must be divisible by {heads_key} ({heads})")


def check_hf_sizes(section: str, hf: dict[str, Any] | None, keys: tuple[str, ...]) -> None:
    """The size fields of a stored transformers config are integers in range."""
    for key in keys:
        if hf and key in hf:
            hi = MAX_VOCAB if key == "vocab_size" else MAX_CONTEXT if "position" in key else \
                MAX_LAYERS if "layers" in key else 8 * MAX_WIDTH if "ffn" in key or "intermediate" in key else MAX_WIDTH
            check_int(f"{section}.hf_config.{key}", hf[key], 1, hi)


def check_weights_file(key: str, path: str | None) -> None:
    """Weight files are safetensors: a pickle (``.pth``, ``.bin``) is never loaded."""
    if path is not None and not str(path).endswith(".safetensors"):
        raise ConfigError(f"{key}: {path} is not a .safetensors file; mmgpt loads no pickled weights "
                          "(convert a file you trust once: mmgpt convert-weights IN.pth OUT.safetensors)")
