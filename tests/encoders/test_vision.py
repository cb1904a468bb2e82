"""Vision encoder: timm models, local weight files, layer selection, prefix tokens dropped."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from mmgpt.config import VisionConfig
from mmgpt.encoders.vision import VisionEncoder
from mmgpt.errors import CheckpointError, ConfigError

KW = dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2)


def tiny_cfg(**over) -> VisionConfig:
    base = dict(model_name="vit_small_patch16_224", **KW)
    base.update(over)
    return VisionConfig(**base)


def test_patch_features_drop_prefix_tokens():
    enc = VisionEncoder(tiny_cfg(reg_tokens=2)).eval()
    assert enc.num_prefix_tokens == 3  # CLS + 2 registers
    x = torch.randn(2, 3, 32, 32)
    feats, lengths = enc(x)
    assert feats.shape == (2, 16, 32) and lengths.tolist() == [16, 16]
    assert enc.num_tokens(0) == enc.num_tokens(999) == enc.fixed_tokens == 16
    full = enc.model.forward_features(x)  # (2, 19, 32)
    torch.testing.assert_close(feats, full[:, 3:])


def test_weight_file_loads_through_timm(tmp_path):
    torch.manual_seed(1)
    ref = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, **KW).eval()
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    torch.manual_seed(2)  # a different init, so equality proves the file was read
    enc = VisionEncoder(tiny_cfg(pretrained_path=str(path))).eval()
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(enc(x)[0], ref.forward_features(x)[:, 1:])
    random_enc = VisionEncoder(tiny_cfg()).eval()
    assert not torch.allclose(random_enc(x)[0], enc(x)[0])


def test_missing_or_mismatched_weight_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        VisionEncoder(tiny_cfg(pretrained_path=str(tmp_path / "none.safetensors")))
    other = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, img_size=32, patch_size=8,
                              embed_dim=48, depth=1, num_heads=2)
    path = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    with pytest.raises(CheckpointError, match="do not fit"):
        VisionEncoder(tiny_cfg(pretrained_path=str(path)))


def test_select_layer_minus_two_is_penultimate_block_output():
    torch.manual_seed(0)
    full = VisionEncoder(tiny_cfg()).eval()
    sel = VisionEncoder(tiny_cfg(select_layer=-2)).eval()
    sel.model.load_state_dict(full.model.state_dict(), strict=False)
    assert len(sel.model.blocks) == 2  # the last block is pruned: it costs nothing
    x = torch.randn(2, 3, 32, 32)
    m = full.model
    h = m.norm_pre(m._pos_embed(m.patch_embed(x)))
    for blk in m.blocks[:2]:
        h = blk(h)
    torch.testing.assert_close(sel(x)[0], h[:, 1:])


def test_bad_names_and_layers_raise_config_error():
    with pytest.raises(ConfigError, match="select_layer"):
        VisionEncoder(tiny_cfg(select_layer=7))
    with pytest.raises(ConfigError, match="cannot build timm model"):
        VisionEncoder(tiny_cfg(model_name="no_such_model_xyz"))


def test_image_transform_squashes_whole_image():
    from PIL import Image

    enc = VisionEncoder(tiny_cfg())
    tf = enc.image_transform()
    img = Image.new("RGB", (80, 40), (255, 0, 0))
    img.paste((0, 0, 255), (70, 0, 80, 40))  # a blue strip at the right edge must survive (no crop)
    x = tf(img)
    assert x.shape == (3, 32, 32)
    assert x[2, :, -1].mean() > x[0, :, -1].mean()
