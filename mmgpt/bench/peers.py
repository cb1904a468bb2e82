"""The A/B pair: an mmgpt model and transformers' ``LlavaForConditionalGeneration`` of the same size.

Shapes: B rows, T tokens per row, N image tokens per image (= patches, no reducer), V vocabulary.

The peer is built from the mmgpt model, not from a second set of numbers, so the two cannot
drift apart:

- vision: mmgpt's timm ViT (pre-norm blocks, CLS token, learned position embeddings, GELU MLP)
  against ``CLIPVisionModel`` with the same width, depth, heads, MLP width, patch and image size
  and ``hidden_act="gelu"``; both take the last block's patch tokens (``select_layer=-1`` /
  ``vision_feature_layer=-1``, CLS dropped). With -2 Llava would still run and keep the last
  block while mmgpt prunes it, so the parameter counts would differ by a block.
- projector: mmgpt's ``mlp`` adapter (Linear, GELU, Linear; no reducer, so N = patches) against
  Llava's 2-layer GELU projector of the same widths.
- decoder: the very Llama config mmgpt built (``model.decoder.config``) is Llava's text config.
- audio is not part of the comparison: the mmgpt side is built with ``audio: null``.

Remaining differences, all under 0.1 % of the parameters: CLIP has a pre-norm LayerNorm and an
(unused for patch tokens) post-norm, timm a final norm and a patch-embedding bias.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from mmgpt.config import MMGPTConfig, read_yaml
from mmgpt.tokenizer import MEDIA_TOKENS, special_ids


def preset_path(name: str):
    """Path of a shipped model preset (``tiny``, ``small``, ``quickstart``)."""
    from mmgpt import resources

    return resources.preset(name)


def padded_tokenizer(vocab_size: int):
    """The byte-level tokenizer with unused tokens appended up to ``vocab_size`` entries, so the
    embedding and LM-head sizes are the preset's (the tokens themselves are never trained)."""
    from mmgpt.tokenizer import byte_tokenizer

    tok = byte_tokenizer()
    extra = vocab_size - len(tok)
    if extra > 0:
        tok.add_tokens([f"<|unused{i}|>" for i in range(extra)])
    return tok


def load_preset(name: str, overrides: list[str] | None = None) -> MMGPTConfig:
    """A model preset as a config object, with ``key=value`` overrides (``audio=null`` also drops
    the audio adapter)."""
    from mmgpt.config import apply_overrides, from_dict

    data = apply_overrides(read_yaml(preset_path(name)), overrides)
    if data.get("audio", {}) is None:
        data.get("adapters", {}).pop("audio", None)
    return from_dict(MMGPTConfig, data)


def build_mmgpt(preset: str, overrides: list[str] | None = None, seed: int = 0):
    """An mmgpt model of a preset, random weights, vocabulary padded to the preset's size."""
    from mmgpt.model import MMGPT

    cfg = load_preset(preset, overrides)
    torch.manual_seed(seed)
    return MMGPT(cfg, padded_tokenizer(cfg.tokenizer.vocab_size))


AB_OVERRIDES = ["audio=null", "adapters.image.reducer=none", "adapters.image.type=mlp",
                "adapters.image.num_layers=2", "vision.select_layer=-1"]


def build_pair(preset: str, seed: int = 0, side: str | None = None):
    """(mmgpt model, Llava model) at equal sizes, both from seed ``seed``.

    ``side="mmgpt"`` builds mmgpt only (Llava is None); ``side="llava"`` builds Llava, and mmgpt
    as a shell on the meta device (no memory), whose config, tokenizer and processor are still
    usable, so a child that measures Llava's memory holds Llava alone.
    """
    from mmgpt.model import MMGPT

    cfg = load_preset(preset, AB_OVERRIDES)
    torch.manual_seed(seed)
    if side == "llava":
        with torch.device("meta"):
            mm = MMGPT(cfg, padded_tokenizer(cfg.tokenizer.vocab_size))
    else:
        mm = MMGPT(cfg, padded_tokenizer(cfg.tokenizer.vocab_size))
    llava = None
    if side in (None, "llava"):
        torch.manual_seed(seed)
        llava = build_llava(mm)
    return mm, llava


def build_llava(mm):
    """``LlavaForConditionalGeneration`` with the vision, projector and decoder sizes of ``mm``."""
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration

    enc = mm.encoders["image"]
    vit = enc.model
    block = vit.blocks[0]
    vcfg = mm.config.vision
    vision = CLIPVisionConfig(
        hidden_size=enc.width, intermediate_size=block.mlp.fc1.out_features, num_hidden_layers=len(vit.blocks),
        num_attention_heads=block.attn.num_heads, image_size=vcfg.img_size, patch_size=vit.patch_embed.patch_size[0],
        hidden_act="gelu", layer_norm_eps=vit.norm.eps if hasattr(vit.norm, "eps") else 1e-6,
    )
    text = copy.deepcopy(mm.decoder.config)
    text.use_cache = True  # mmgpt keeps it off for training and asks for the cache in generate
    image_id = mm.media_token_ids["image"]
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=image_id, image_seq_length=enc.num_tokens(),
        projector_hidden_act="gelu", vision_feature_select_strategy="default", vision_feature_layer=-1,
        tie_word_embeddings=bool(text.tie_word_embeddings),
    )
    config._attn_implementation = "sdpa"
    for sub in (config.vision_config, config.text_config):
        sub._attn_implementation = "sdpa"
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = mm.pad_token_id
    model.generation_config.eos_token_id = list(mm.stop_token_ids)
    model.generation_config.bos_token_id = None
    model.generation_config.use_cache = True
    return model


def num_params(model: torch.nn.Module) -> int:
    """Distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


@dataclass
class ABBatch:
    """A batch both models read: pre-expanded ids with one image span per row."""

    input_ids: torch.Tensor  # (B, T)
    labels: torch.Tensor  # (B, T), -100 on the prompt's media span
    attention_mask: torch.Tensor  # (B, T)
    pixel_values: torch.Tensor  # (B, 3, H, W)
    image_tokens: int = 0  # N x B

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())

    def media(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The pixels as mmgpt's model takes them: ``{"image": (values, lengths)}``."""
        sides = torch.full((self.pixel_values.shape[0],), self.pixel_values.shape[-1], dtype=torch.long,
                           device=self.pixel_values.device)
        return {"image": (self.pixel_values, sides)}

    def to(self, device) -> ABBatch:
        moved = (t.to(device) for t in (self.input_ids, self.labels, self.attention_mask, self.pixel_values))
        return ABBatch(*moved, image_tokens=self.image_tokens)


def ab_batch(mm_or_cfg, tokenizer, rows: int, length: int, seed: int = 0) -> ABBatch:
    """``rows`` rows of ``length`` tokens: ``<|image_start|> N x <|image_pad|> <|image_end|>`` then
    random text tokens; labels on the text only. Ids are valid for both models."""
    cfg = mm_or_cfg.config if hasattr(mm_or_cfg, "config") else mm_or_cfg
    n_img = (cfg.vision.img_size // cfg.vision.patch_size) ** 2
    ids = special_ids(tokenizer)
    start, pad, end = (ids[t] for t in MEDIA_TOKENS["image"])
    if length < n_img + 4:
        raise ValueError(f"bench: rows of {length} tokens cannot hold an image of {n_img} tokens")
    g = torch.Generator().manual_seed(seed)
    low = max(ids.values()) + 1  # ordinary tokens only
    text = torch.randint(low, len(tokenizer), (rows, length - n_img - 2), generator=g)
    media = torch.tensor([start] + [pad] * n_img + [end]).expand(rows, -1)  # (B, N + 2)
    input_ids = torch.cat([media, text], dim=1)  # (B, T)
    labels = input_ids.clone()
    labels[:, : n_img + 2] = -100
    pixels = torch.randn(rows, 3, cfg.vision.img_size, cfg.vision.img_size, generator=g)
    return ABBatch(input_ids, labels, torch.ones_like(input_ids), pixels, rows * n_img)
