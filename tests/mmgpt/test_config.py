"""Config: typed loading, overrides, unknown keys and bad values, JSON round trip, presets."""

from __future__ import annotations

import pytest

from mmgpt import resources
from mmgpt.config import AdapterConfig, MMGPTConfig, apply_overrides
from mmgpt.errors import ConfigError

PRESETS = [resources.preset(name) for name in resources.shipped("preset")]


def test_unknown_key_names_the_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("decoder:\n  hidden_sze: 64\n")
    with pytest.raises(ConfigError, match=r"decoder\.hidden_sze"):
        MMGPTConfig.from_yaml(p)


def test_unknown_override_key_names_the_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("max_length: 64\n")
    with pytest.raises(ConfigError, match=r"audio\.nmels"):
        MMGPTConfig.from_yaml(p, ["audio.nmels=80"])


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("decoder.hidden_size=big", r"decoder\.hidden_size: expected an integer"),
        ("audio.n_mels=81", r"audio\.n_mels: 81 is not one of"),
        ("adapters.image.type=conv", r"adapters\.image\.type"),
        ("decoder.tie_word_embeddings=3", r"decoder\.tie_word_embeddings: expected true or false"),
        ("adapters.video.type=mlp", r"adapters\.video: unknown modality"),
        ("decoder.hidden_size=66", r"divisible"),
        ("nokey", r"key\.sub=value"),
    ],
)
def test_bad_values_raise_config_error(override, match):
    with pytest.raises(ConfigError, match=match):
        MMGPTConfig.from_dict(apply_overrides({}, [override]))


def test_overrides_set_nested_values_and_null():
    cfg = MMGPTConfig.from_dict(apply_overrides({}, ["decoder.hidden_size=128", "audio=null", "max_length=64"]))
    assert cfg.decoder.hidden_size == 128
    assert cfg.audio is None
    assert cfg.modalities == ("image",)
    assert cfg.max_length == 64


def test_json_round_trip():
    cfg = MMGPTConfig.from_dict(apply_overrides({}, ["adapters.audio.type=resampler", "vision.select_layer=-2"]))
    back = MMGPTConfig.from_dict(__import__("json").loads(cfg.to_json()))
    assert back == cfg
    assert isinstance(back.adapters["audio"], AdapterConfig)
    assert back.adapters["audio"].type == "resampler"


def test_yaml_base_inheritance(tmp_path):
    (tmp_path / "base.yaml").write_text("decoder:\n  hidden_size: 96\n  num_heads: 4\nmax_length: 100\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\ndecoder:\n  num_layers: 3\n")
    cfg = MMGPTConfig.from_yaml(tmp_path / "child.yaml")
    assert (cfg.decoder.hidden_size, cfg.decoder.num_layers, cfg.max_length) == (96, 3, 100)


def test_yaml_syntax_error_and_missing_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("decoder: [unclosed\n")
    with pytest.raises(ConfigError, match="YAML syntax error"):
        MMGPTConfig.from_yaml(p)
    with pytest.raises(ConfigError, match="not found"):
        MMGPTConfig.from_yaml(tmp_path / "nope.yaml")


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_model_preset_loads(preset):
    cfg = MMGPTConfig.from_yaml(preset)
    assert cfg.modalities == (("image",) if preset.stem == "llava" else ("image", "audio"))
    assert MMGPTConfig.from_dict(cfg.to_dict()) == cfg


def test_exponent_without_dot_is_a_number(tmp_path):
    from mmgpt.config import VisionConfig

    p = tmp_path / "c.yaml"
    p.write_text("vision:\n  mlp_ratio: 4e0\n")  # PyYAML gives the string '4e0'
    assert MMGPTConfig.from_yaml(p).vision.mlp_ratio == 4.0
    assert isinstance(VisionConfig().img_size, int)
    with pytest.raises(ConfigError, match="expected a number"):
        MMGPTConfig.from_yaml(p, ["vision.mlp_ratio=four"])
