"""Typed, nested configuration: dataclasses, YAML for runs, ``key.sub=value`` overrides.

Every config is a dataclass. :func:`from_dict` builds one from plain data and checks every
key and value against the type hints: an unknown key or a value of the wrong type raises
:class:`~mmgpt.errors.ConfigError` naming the dotted key (``decoder.hidden_size``). The same
machinery serves the model config here and the training config in ``mmgpt.train.config``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from mmgpt import resources
from mmgpt.config_values import (
    AUDIO_HF_SIZES,
    DECODER_HF_SIZES,
    MAX_CONTEXT,
    MAX_LAYERS,
    MAX_VOCAB,
    MAX_WIDTH,
    TIMM_KWARGS,
    check_divides,
    check_hf_sizes,
    check_int,
    check_weights_file,
)
from mmgpt.errors import ConfigError

T = TypeVar("T")
# modality -> the MMGPTConfig field with its encoder's settings (mmgpt.modalities has the rest)
ENCODER_FIELDS = {"image": "vision", "audio": "audio"}
MODALITIES = tuple(ENCODER_FIELDS)


# --------------------------------------------------------------------------- generic machinery
def _check(value: Any, hint: Any, key: str) -> Any:
    """Coerce ``value`` to the type ``hint`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: bad value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {hint.__name__}, got {value!r}")
        return from_dict(hint, value, prefix=key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        kt, vt = args or (str, Any)
        if vt in (bool, int, float, str):
            value = _flatten(value)  # `trainable.encoders.image=true` arrives nested
        return {_check(k, kt, key): _check(v, vt, f"{key}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return [_check(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # PyYAML reads `5e-4` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {hint!r}")  # a bug in a config class, not user input


def _flatten(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}, for mappings keyed by dotted names (part names)."""
    out = {}
    for k, v in d.items():
        name = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(_flatten(v, name))
        else:
            out[name] = v
    return out


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, checking keys and value types recursively.

    Raises:
        ConfigError: unknown key, missing required key, or a value of the wrong type; the
            message names the dotted key.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown config key {where}{unknown[0]!s} (known keys of {prefix or cls.__name__}: "
            f"{', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _check(value, hints[name], f"{prefix}.{name}" if prefix else name)
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field was not given
        raise ConfigError(f"{prefix or cls.__name__}: {e}") from None


def to_dict(obj: Any) -> Any:
    """Plain-data (JSON/YAML-able) form of a config dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``["a.b=c", ...]`` to nested plain data; values are parsed as YAML scalars.

    ``a.b=null`` sets None; a key whose parent is None or missing creates the mapping, so
    ``vision.img_size=32`` works even when the YAML left ``vision`` out. Unknown keys are
    caught afterwards by :func:`from_dict`.

    Raises:
        ConfigError: an override without ``=`` or with an empty key.
    """
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: cannot parse value: {e}") from None
        node = data
        for i, p in enumerate(parts[:-1]):
            if not isinstance(node.get(p), dict):
                if node.get(p) is not None and not isinstance(node.get(p), dict):
                    raise ConfigError(f"override {item!r}: {'.'.join(parts[: i + 1])} is not a mapping")
                node[p] = {}
            node = node[p]
        node[parts[-1]] = value
    return data


def read_yaml(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Read a YAML mapping, resolving ``base: other.yaml`` recursively.

    Args:
        path: the file; with ``kind`` (``preset``, ``recipe``, ``plan``) also the name of a
            shipped one (:mod:`mmgpt.resources`).
        kind: what the file is; a ``base`` is then a file next to it or a shipped one of that kind.

    Raises:
        ConfigError: missing file, YAML syntax error, or a top level that is not a mapping.
    """
    path = resources.resolve(kind, path) if kind else Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: YAML syntax error: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    base = data.pop("base", None)
    if base is not None:
        beside = path.parent / str(base)
        merged = read_yaml(beside if beside.is_file() or not kind else base, kind)
        return deep_merge(merged, data)
    return data


def deep_merge(a: dict, b: dict) -> dict:
    """``b`` merged into ``a`` recursively (mappings merge, other values replace)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# --------------------------------------------------------------------------- model config
@dataclass
class VisionConfig:
    """A timm vision transformer. ``None`` fields keep the timm model's own default."""

    model_name: str = "vit_small_patch16_224"
    img_size: int = 64
    patch_size: int | None = 8
    embed_dim: int | None = 192
    depth: int | None = 4
    num_heads: int | None = 3
    mlp_ratio: float | None = None
    reg_tokens: int | None = None
    select_layer: int = -1  # which block's output to use; -2 is LLaVA's choice
    pretrained_path: str | None = None  # a local timm weight file (.safetensors)
    timm_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_int("vision.img_size", self.img_size, 1, 16_384)
        check_int("vision.patch_size", self.patch_size, 1, self.img_size)
        check_int("vision.embed_dim", self.embed_dim)
        check_int("vision.depth", self.depth, 1, MAX_LAYERS)
        check_int("vision.num_heads", self.num_heads, 1, self.embed_dim or MAX_WIDTH)
        check_int("vision.reg_tokens", self.reg_tokens, 0, 1_024)
        check_divides("vision.embed_dim", self.embed_dim, "vision.num_heads", self.num_heads)
        if self.mlp_ratio is not None and not 0 < self.mlp_ratio <= 64:
            raise ConfigError(f"vision.mlp_ratio must be in (0, 64], got {self.mlp_ratio}")
        if self.select_layer == 0:
            raise ConfigError("vision.select_layer counts blocks from 1 (or from the end with -1); 0 is invalid")
        check_weights_file("vision.pretrained_path", self.pretrained_path)
        for key, value in self.timm_kwargs.items():
            if key not in TIMM_KWARGS:
                raise ConfigError(f"vision.timm_kwargs.{key} is not an architecture argument mmgpt passes to timm "
                                  f"(allowed: {', '.join(sorted(TIMM_KWARGS))}); weights come from pretrained_path")
            if not isinstance(value, (int, float, str, bool, type(None))) and not (
                    isinstance(value, list) and all(isinstance(v, (int, float)) for v in value)):
                raise ConfigError(f"vision.timm_kwargs.{key} must be a number, string, bool or list of numbers")


@dataclass
class AudioConfig:
    """A Whisper-style encoder on a Whisper-compatible log-mel front end (16 kHz).

    ``max_source_positions`` sets the encoder window: ``2 * max_source_positions`` mel frames
    of 10 ms (1500 → 30 s, as in Whisper). Clips are never padded to the window; longer clips
    are split into windows whose features are concatenated in order.
    """

    n_mels: Literal[80, 128] = 80
    d_model: int = 192
    layers: int = 2
    heads: int = 3
    ffn_dim: int = 768
    max_source_positions: int = 1500
    pretrained_path: str | None = None  # a local Whisper checkpoint directory
    hf_config: dict[str, Any] | None = None  # full WhisperConfig, filled in when saved

    def __post_init__(self) -> None:
        for name, hi in (("d_model", MAX_WIDTH), ("layers", MAX_LAYERS), ("heads", MAX_WIDTH),
                         ("ffn_dim", 8 * MAX_WIDTH), ("max_source_positions", MAX_CONTEXT)):
            check_int(f"audio.{name}", getattr(self, name), 1, hi)
        check_divides("audio.d_model", self.d_model, "audio.heads", self.heads)
        check_hf_sizes("audio", self.hf_config, AUDIO_HF_SIZES)
        if self.hf_config:
            check_divides("audio.hf_config.d_model", self.hf_config.get("d_model"),
                          "audio.hf_config.encoder_attention_heads", self.hf_config.get("encoder_attention_heads"))


@dataclass
class AdapterConfig:
    """Projects one modality's encoder features into the decoder's embedding space.

    ``reducer`` first cuts the token count (``pixel_shuffle`` merges r×r patches,
    ``frame_stack`` stacks k frames), then ``type`` maps to the decoder width: ``linear``,
    ``mlp`` (``num_layers`` Linear layers with GELU, LLaVA-1.5 style) or ``resampler``
    (``num_queries`` learned queries cross-attending to the features, Perceiver style).
    """

    type: Literal["linear", "mlp", "resampler"] = "mlp"
    reducer: Literal["none", "pixel_shuffle", "frame_stack"] = "none"
    factor: int = 2
    num_layers: int = 2
    hidden_dim: int | None = None  # MLP hidden width; default the decoder width
    num_queries: int = 16
    resampler_layers: int = 2
    resampler_heads: int = 4
    pos_embed: bool = False  # learned embedding per output token (fixed-size images only)

    def __post_init__(self) -> None:
        check_int("adapter.factor", self.factor, 1, 64)
        check_int("adapter.num_layers", self.num_layers, 1, 64)
        check_int("adapter.hidden_dim", self.hidden_dim, 1, 8 * MAX_WIDTH)
        check_int("adapter.num_queries", self.num_queries, 1, 16_384)
        check_int("adapter.resampler_layers", self.resampler_layers, 1, 64)
        check_int("adapter.resampler_heads", self.resampler_heads, 1, MAX_WIDTH)


@dataclass
class DecoderConfig:
    """Any transformers causal LM: a local directory / hub name, or a fresh config.

    With ``pretrained_path`` unset, a ``model_type`` config (default Llama) of the given sizes
    is built with random weights. ``hf_config`` holds extra or complete transformers config
    fields; a saved checkpoint stores the decoder's full config here so it reloads alone.
    """

    pretrained_path: str | None = None
    model_type: str = "llama"
    hidden_size: int = 256
    intermediate_size: int = 688
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int | None = None
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    hf_config: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        check_int("decoder.hidden_size", self.hidden_size)
        check_int("decoder.intermediate_size", self.intermediate_size, 1, 8 * MAX_WIDTH)
        check_int("decoder.num_layers", self.num_layers, 1, MAX_LAYERS)
        check_int("decoder.num_heads", self.num_heads, 1, self.hidden_size)
        check_int("decoder.num_kv_heads", self.num_kv_heads, 1, self.num_heads)
        check_divides("decoder.hidden_size", self.hidden_size, "decoder.num_heads", self.num_heads)
        check_divides("decoder.num_heads", self.num_heads, "decoder.num_kv_heads", self.num_kv_heads)
        if not 0 < self.rope_theta < 1e12:
            raise ConfigError(f"decoder.rope_theta must be positive, got {self.rope_theta}")
        hf = self.hf_config or {}
        check_hf_sizes("decoder", hf, DECODER_HF_SIZES)
        if "head_dim" not in hf or hf.get("head_dim") is None:
            check_divides("decoder.hf_config.hidden_size", hf.get("hidden_size"),
                          "decoder.hf_config.num_attention_heads", hf.get("num_attention_heads"))
        check_divides("decoder.hf_config.num_attention_heads", hf.get("num_attention_heads"),
                      "decoder.hf_config.num_key_value_heads", hf.get("num_key_value_heads"))


@dataclass
class TokenizerConfig:
    """``path``: a local transformers tokenizer directory (or hub name); else a byte-level BPE.

    The byte-level BPE starts as bytes only (256 tokens + specials); ``mmgpt.tokenizer``
    can train merges on a corpus up to ``vocab_size``. ``prefix_space`` encodes every text
    part with one leading space so a word is one token wherever it stands (see
    :mod:`mmgpt.tokenizer`); ``None`` means on for the byte-level BPE, off for ``path``.

    ``media_after_text``: in a user turn of a chat, put the turn's images and clips after its
    text (in the processor and the chat template alike), whatever order the message lists
    them in. A causal decoder otherwise reads the media before the question, so media tokens
    cannot depend on what is asked; after it, each image token can attend to "the shape at the
    top left" and mark itself (question-aware visual tokens, as InstructBLIP gets from its
    Q-Former, with no extra module). Documents and assistant turns keep their order.
    """

    path: str | None = None
    vocab_size: int = 512
    prefix_space: bool | None = None
    media_after_text: bool = False

    def __post_init__(self) -> None:
        check_int("tokenizer.vocab_size", self.vocab_size, 1, MAX_VOCAB)

    def resolved_prefix_space(self) -> bool:
        return self.path is None if self.prefix_space is None else bool(self.prefix_space)


@dataclass
class MMGPTConfig:
    """The whole model. ``vision: null`` or ``audio: null`` leaves that modality out."""

    vision: VisionConfig | None = field(default_factory=VisionConfig)
    audio: AudioConfig | None = field(default_factory=AudioConfig)
    adapters: dict[str, AdapterConfig] = field(
        default_factory=lambda: {
            "image": AdapterConfig(reducer="pixel_shuffle", factor=2),
            "audio": AdapterConfig(reducer="frame_stack", factor=4),
        }
    )
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    max_length: int = 512  # context length in tokens (media tokens included)

    def __post_init__(self) -> None:
        for name in self.adapters:
            if name not in MODALITIES:
                raise ConfigError(f"adapters.{name}: unknown modality (expected one of {', '.join(MODALITIES)})")
        for modality in self.modalities:
            self.adapters.setdefault(modality, AdapterConfig())
        check_int("max_length", self.max_length, 8, MAX_CONTEXT)

    @property
    def modalities(self) -> tuple[str, ...]:
        """Enabled modalities (their encoder section is set), in the registry's order."""
        return tuple(m for m, f in ENCODER_FIELDS.items() if getattr(self, f) is not None)

    def encoder_config(self, modality: str) -> Any:
        """The encoder settings of ``modality`` (``vision`` for ``image``)."""
        return getattr(self, ENCODER_FIELDS[modality])

    # -- I/O ----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MMGPTConfig:
        return from_dict(cls, data)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> MMGPTConfig:
        """Load a model preset (a YAML path, or a shipped name: ``tiny``, ``quickstart``, ``small``)
        with ``key=value`` overrides.

        Raises:
            ConfigError: missing file, bad YAML, unknown key or bad value (named).
        """
        return from_dict(cls, apply_overrides(read_yaml(path, "preset"), overrides))

    @classmethod
    def from_json(cls, path: str | Path) -> MMGPTConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: cannot read config: {e}") from None
        return from_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)
