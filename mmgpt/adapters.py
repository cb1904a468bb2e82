"""Adapters: encoder features -> vectors in the decoder's embedding space.

Shapes: B items, N input tokens (patches or frames), D encoder width, H decoder width,
r pixel-shuffle factor, k frame-stack factor, Q resampler queries.

    features (B, N, D) [+ lengths (B,)] -> reducer -> (B, N', D') -> projector -> (B, N'', H) [+ lengths]

Reducers: ``pixel_shuffle`` merges r x r neighbouring patches (N' = N / r², D' = D r²);
``frame_stack`` concatenates k consecutive frames (N' = ceil(N / k), D' = D k). Projectors:
``linear``, ``mlp`` (LLaVA-1.5: Linear, GELU, Linear ...), ``resampler`` (Q learned queries
cross-attending to the features; always Q output tokens).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmgpt.config import AdapterConfig
from mmgpt.errors import ConfigError


def pixel_shuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """(B, N, D) on a square grid -> (B, N / r², D r²), merging each r x r block of patches."""
    B, N, D = x.shape
    side = math.isqrt(N)
    x = x.reshape(B, side // r, r, side // r, r, D)  # (B, h, r, w, r, D)
    x = x.permute(0, 1, 3, 2, 4, 5)  # (B, h, w, r, r, D)
    return x.reshape(B, (side // r) ** 2, r * r * D)  # (B, N/r², D r²)


def frame_stack(x: torch.Tensor, k: int, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, D) + (B,) -> (B, ceil(T/k), D k) + (B,) lengths ceil(len/k).

    Frames past each clip's length are zeroed first, so the last, partial group of a clip is
    zero-padded exactly as it would be if the clip were alone.
    """
    B, T, D = x.shape
    valid = torch.arange(T, device=x.device)[None, :] < lengths.to(x.device)[:, None]  # (B, T)
    x = x * valid[..., None].to(x.dtype)
    pad = (-T) % k
    x = F.pad(x, (0, 0, 0, pad))  # (B, T + pad, D)
    x = x.reshape(B, (T + pad) // k, k * D)  # (B, T', D k)
    return x, (lengths + k - 1) // k


def sincos_2d(n: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine embedding of a square grid of ``n`` tokens: (n, dim), unit rows.

    Half the channels encode the row, half the column. A coordinate t in (0, 1) (cell centre)
    is encoded as sin / cos of pi * t * f for frequencies f from 1 (cos separates the two
    halves of the image) to the grid side (separates neighbours). A non-square ``n`` is
    treated as one row.
    """
    side = math.isqrt(n)
    rows, cols = (side, side) if side * side == n else (1, n)
    quarter = max(dim // 4, 1)
    top = math.log2(max(rows, cols, 2))
    freq = math.pi * 2.0 ** torch.linspace(0.0, top, quarter)  # (Q,)
    r, c = torch.meshgrid((torch.arange(rows) + 0.5) / rows, (torch.arange(cols) + 0.5) / cols, indexing="ij")
    parts = [f(t.reshape(-1, 1) * freq) for t in (r, c) for f in (torch.sin, torch.cos)]  # 4 x (n, Q)
    emb = torch.cat(parts, dim=1)[:, :dim]
    emb = F.pad(emb, (0, dim - emb.shape[1]))  # (n, dim)
    return emb / emb.norm(dim=1, keepdim=True).clamp(min=1e-6)


def adapter_tokens(cfg: AdapterConfig, n_in: int) -> int:
    """Tokens an adapter with config ``cfg`` outputs for ``n_in`` encoder tokens of one item.

    Raises:
        ConfigError: pixel_shuffle on a grid whose side is not divisible by the factor.
    """
    if cfg.type == "resampler":
        return cfg.num_queries
    if cfg.reducer == "pixel_shuffle":
        side = math.isqrt(n_in)
        if side * side != n_in or side % cfg.factor:
            raise ConfigError(
                f"adapters: pixel_shuffle factor {cfg.factor} needs a square patch grid with a side "
                f"divisible by it; got {n_in} patches"
            )
        return n_in // cfg.factor**2
    if cfg.reducer == "frame_stack":
        return -(-n_in // cfg.factor)
    return n_in


class MLP(nn.Module):
    """``num_layers`` Linear layers with GELU between them (LLaVA-1.5 projector for 2)."""

    def __init__(self, in_dim: int, out_dim: int, num_layers: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden = hidden_dim or out_dim
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < num_layers - 1:
                layers.append(nn.GELU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Resampler(nn.Module):
    """Perceiver-style resampler: Q learned queries attend to the features, then an MLP.

    Each layer: queries <- queries + CrossAttn(LN(queries), LN(features)); queries <- queries +
    MLP(LN(queries)). Padding positions of the features are masked out.
    """

    def __init__(self, in_dim: int, out_dim: int, num_queries: int, num_layers: int, num_heads: int) -> None:
        super().__init__()
        if out_dim % num_heads:
            raise ConfigError(f"resampler: decoder width {out_dim} not divisible by resampler_heads {num_heads}")
        self.input_proj = nn.Linear(in_dim, out_dim)
        self.queries = nn.Parameter(torch.randn(num_queries, out_dim) * 0.02)
        self.layers = nn.ModuleList()
        for _ in range(num_layers):
            self.layers.append(
                nn.ModuleDict(
                    {
                        "norm_q": nn.LayerNorm(out_dim),
                        "norm_kv": nn.LayerNorm(out_dim),
                        "attn": nn.MultiheadAttention(out_dim, num_heads, batch_first=True),
                        "norm_ff": nn.LayerNorm(out_dim),
                        "ff": MLP(out_dim, out_dim, 2, hidden_dim=4 * out_dim),
                    }
                )
            )
        self.norm_out = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        B, N, _ = x.shape
        kv = self.input_proj(x)  # (B, N, H)
        pad_mask = None
        if lengths is not None:
            pad_mask = torch.arange(N, device=x.device)[None, :] >= lengths.to(x.device)[:, None]  # (B, N) True=pad
        q = self.queries[None].expand(B, -1, -1).to(kv.dtype)  # (B, Q, H)
        for layer in self.layers:
            kvn = layer["norm_kv"](kv)
            attn, _ = layer["attn"](layer["norm_q"](q), kvn, kvn, key_padding_mask=pad_mask, need_weights=False)
            q = q + attn
            q = q + layer["ff"](layer["norm_ff"](q))
        return self.norm_out(q)  # (B, Q, H)


class Adapter(nn.Module):
    """Reducer + projector for one modality.

    Args:
        cfg: the modality's :class:`~mmgpt.config.AdapterConfig`.
        in_dim: encoder width D.
        out_dim: decoder width H.
        layout: the encoder's token layout: ``"grid"`` (pixel_shuffle applies) or ``"sequence"``
            (frame_stack applies).
        num_in: encoder tokens per item when fixed (needed by ``pos_embed``), else None.
        name: the modality's name, for messages (``adapters.image``).

    Raises:
        ConfigError: a reducer that does not fit the layout, or ``pos_embed`` without a fixed size.
    """

    def __init__(self, cfg: AdapterConfig, in_dim: int, out_dim: int, layout: str = "sequence",
                 num_in: int | None = None, name: str = "media") -> None:
        super().__init__()
        self.cfg = cfg
        self.pos = None
        if cfg.pos_embed:
            if num_in is None:
                raise ConfigError(f"adapters.{name}.pos_embed needs a fixed number of tokens per item (images)")
            # Says which patch of the grid a token is, so the decoder can find "the top left" by
            # content. Starts from a 2-D sine-cosine layout (informative from step one) and learns.
            self.pos = nn.Parameter(sincos_2d(adapter_tokens(cfg, num_in), out_dim))
        if cfg.reducer == "pixel_shuffle" and layout != "grid":
            raise ConfigError(f"adapters.{name}.reducer: pixel_shuffle works on patch grids (images) only")
        if cfg.reducer == "frame_stack" and layout != "sequence":
            raise ConfigError(f"adapters.{name}.reducer: frame_stack works on frame sequences (audio) only")
        k = cfg.factor if cfg.reducer != "none" else 1
        reduced = in_dim * (k * k if cfg.reducer == "pixel_shuffle" else k)
        if cfg.type == "linear":
            self.proj: nn.Module = nn.Linear(reduced, out_dim)
        elif cfg.type == "mlp":
            self.proj = MLP(reduced, out_dim, cfg.num_layers, cfg.hidden_dim)
        else:
            self.proj = Resampler(reduced, out_dim, cfg.num_queries, cfg.resampler_layers, cfg.resampler_heads)

    def num_tokens(self, n_in: int) -> int:
        """Output tokens for ``n_in`` encoder tokens of one item."""
        return adapter_tokens(self.cfg, n_in)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, D) [+ (B,) valid lengths] -> (B, N'', H) + (B,) output lengths."""
        B, N, _ = x.shape
        if lengths is None:
            lengths = torch.full((B,), N, dtype=torch.long, device=x.device)
        if self.cfg.reducer == "pixel_shuffle":
            self.num_tokens(N)  # validates the grid
            x = pixel_shuffle(x, self.cfg.factor)  # (B, N/r², D r²)
            lengths = lengths // self.cfg.factor**2
        elif self.cfg.reducer == "frame_stack":
            x, lengths = frame_stack(x, self.cfg.factor, lengths)  # (B, ceil(N/k), D k)
        if self.cfg.type == "resampler":
            out = self.proj(x, lengths)  # (B, Q, H)
            return out, torch.full((B,), out.shape[1], dtype=torch.long, device=x.device)
        out = self.proj(x)  # (B, N'', H)
        if self.pos is not None:
            out = out + self.pos.to(out.dtype)
        return out, lengths
