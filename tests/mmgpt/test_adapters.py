"""Adapters: output shapes and token counts, and the reducers' exact rearrangements."""

from __future__ import annotations

import pytest
import torch

from mmgpt.adapters import Adapter, adapter_tokens, frame_stack, pixel_shuffle, sincos_2d
from mmgpt.config import AdapterConfig
from mmgpt.errors import ConfigError


@pytest.mark.parametrize(
    ("cfg", "layout", "n_in", "n_out"),
    [
        (AdapterConfig(type="linear"), "grid", 16, 16),
        (AdapterConfig(type="mlp", num_layers=3), "grid", 16, 16),
        (AdapterConfig(type="mlp", reducer="pixel_shuffle", factor=2), "grid", 16, 4),
        (AdapterConfig(type="linear", reducer="pixel_shuffle", factor=4), "grid", 64, 4),
        (AdapterConfig(type="mlp", reducer="frame_stack", factor=3), "sequence", 10, 4),
        (AdapterConfig(type="resampler", num_queries=5, resampler_heads=2), "grid", 16, 5),
        (AdapterConfig(type="resampler", num_queries=7, reducer="frame_stack", factor=2, resampler_heads=2), "sequence", 9, 7),
    ],
)
def test_adapter_shapes_and_token_counts(cfg, layout, n_in, n_out):
    torch.manual_seed(0)
    ad = Adapter(cfg, in_dim=12, out_dim=8, layout=layout)
    out, lengths = ad(torch.randn(3, n_in, 12))
    assert out.shape == (3, n_out, 8)
    assert lengths.tolist() == [n_out] * 3
    assert ad.num_tokens(n_in) == adapter_tokens(cfg, n_in) == n_out
    assert torch.isfinite(out).all()


def test_mlp_layers_and_activation():
    ad = Adapter(AdapterConfig(type="mlp", num_layers=2, hidden_dim=20), 12, 8, "grid")
    kinds = [type(m).__name__ for m in ad.proj.net]
    assert kinds == ["Linear", "GELU", "Linear"]
    assert ad.proj.net[0].out_features == 20


def test_pixel_shuffle_merges_square_blocks():
    # 4x4 grid of patches whose feature is its (row, col); r=2 groups 2x2 blocks.
    grid = torch.tensor([[r, c] for r in range(4) for c in range(4)], dtype=torch.float)[None]  # (1, 16, 2)
    out = pixel_shuffle(grid, 2)  # (1, 4, 8)
    assert out.shape == (1, 4, 8)
    first = out[0, 0].reshape(4, 2).tolist()  # block at top-left: patches (0,0) (0,1) (1,0) (1,1)
    assert first == [[0, 0], [0, 1], [1, 0], [1, 1]]
    last = out[0, 3].reshape(4, 2).tolist()
    assert last == [[2, 2], [2, 3], [3, 2], [3, 3]]


def test_pixel_shuffle_rejects_bad_grid():
    with pytest.raises(ConfigError, match="pixel_shuffle factor 3"):
        adapter_tokens(AdapterConfig(reducer="pixel_shuffle", factor=3), 16)


def test_frame_stack_values_and_padding():
    x = torch.arange(1, 6, dtype=torch.float)[None, :, None].repeat(2, 1, 1)  # (2, 5, 1): frames 1..5
    out, lengths = frame_stack(x, 2, torch.tensor([5, 3]))
    assert out.shape == (2, 3, 2)
    assert out[0].tolist() == [[1, 2], [3, 4], [5, 0]]
    assert out[1].tolist() == [[1, 2], [3, 0], [0, 0]]  # frames past length 3 are zeroed
    assert lengths.tolist() == [3, 2]


def test_reducer_modality_checks():
    with pytest.raises(ConfigError, match="pixel_shuffle works on patch grids"):
        Adapter(AdapterConfig(reducer="pixel_shuffle"), 8, 8, "sequence")
    with pytest.raises(ConfigError, match="frame_stack works on frame sequences"):
        Adapter(AdapterConfig(reducer="frame_stack"), 8, 8, "grid")


def test_resampler_ignores_padding():
    torch.manual_seed(0)
    ad = Adapter(AdapterConfig(type="resampler", num_queries=4, resampler_heads=2), 6, 8, "sequence").eval()
    x = torch.randn(1, 5, 6)
    alone, _ = ad(x, torch.tensor([5]))
    padded = torch.cat([x, torch.randn(1, 3, 6) * 100], dim=1)  # garbage in padding
    batched, _ = ad(padded, torch.tensor([5]))
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=1e-5)


def test_position_embedding_makes_identical_patches_distinct():
    torch.manual_seed(0)
    cfg = AdapterConfig(type="mlp", reducer="pixel_shuffle", factor=2, pos_embed=True)
    ad = Adapter(cfg, in_dim=6, out_dim=8, layout="grid", num_in=16)
    x = torch.ones(1, 16, 6)  # every patch the same
    out, _ = ad(x)
    assert out.shape == (1, 4, 8)
    assert not torch.allclose(out[0, 0], out[0, 1])
    with pytest.raises(ConfigError, match="fixed number of tokens"):
        Adapter(AdapterConfig(pos_embed=True), 6, 8, "sequence")


def test_sincos_position_start_is_unit_norm_distinct_and_separates_halves():
    emb = sincos_2d(16, 64)  # a 4 x 4 grid
    assert emb.shape == (16, 64)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(16))
    dist = torch.cdist(emb, emb) + torch.eye(16) * 10
    assert dist.min() > 0.2  # every cell has its own vector
    # The lowest-frequency cosine channel of the rows is positive in the top half, negative below.
    q = 64 // 4
    row_cos = emb[:, q].reshape(4, 4)
    assert (row_cos[:2] > 0).all() and (row_cos[2:] < 0).all()
    ad = Adapter(AdapterConfig(type="mlp", reducer="pixel_shuffle", factor=2, pos_embed=True), 6, 64, "grid", 64)
    torch.testing.assert_close(ad.pos.detach(), emb)  # the adapter starts from it and learns
