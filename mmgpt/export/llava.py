"""``--format llava``: an image+text mmgpt model as transformers' ``LlavaForConditionalGeneration``.

The parts map one to one when the model has

* a plain timm ViT (CLS token, no register tokens, no hybrid stem, no pre-norm, no layer scale):
  it becomes a transformers ``ViTModel`` (the fused qkv split into q/k/v). mmgpt takes the
  block ``vision.select_layer`` picks, after the final norm only for the last block; the
  exported tower keeps the blocks mmgpt keeps and sets ``tie_last_hidden_states`` exactly when
  the norm applies, and Llava's ``vision_feature_select_strategy="default"`` drops the CLS token
  as mmgpt does;
* an adapter of type ``linear`` or a 2-layer ``mlp`` (GELU) of the decoder's width, with no
  reducer and no position embedding: Llava's projector (a linear one exported with the identity
  as its second layer);
* any transformers causal LM as the decoder: Llava's ``language_model`` and ``lm_head``;
* no audio encoder.

Anything else is refused with an :class:`~mmgpt.errors.ExportError` naming the part. The
folder holds the weights (safetensors), ``config.json``, ``generation_config.json`` (mmgpt's stop
tokens), the processor (mmgpt's tokenizer and chat template, and a PIL image processor that
squashes to the ViT's size with bicubic resampling and timm's mean/std, as mmgpt does) and a
``README.md`` model card.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mmgpt.errors import ExportError


def check(model) -> None:
    """Refuse a model whose parts Llava cannot hold.

    Raises:
        ExportError: naming the part and what would have to change.
    """
    cfg = model.config
    if "audio" in model.encoders:
        raise ExportError("audio: Llava has no audio tower; export an image+audio model with --format hf, "
                          "or train an image-only model (model=llava) for --format llava")
    if "image" not in model.encoders:
        raise ExportError("image: the model has no vision encoder; Llava needs one")
    vit = model.encoders["image"].model
    checks = [
        (type(vit).__name__ == "VisionTransformer", f"vision.model_name {cfg.vision.model_name!r} is not a plain ViT "
                                                    f"({type(vit).__name__})"),
        (type(getattr(vit, "patch_embed", None)).__name__ == "PatchEmbed"
         and getattr(vit.patch_embed, "backbone", None) is None, "vision: a hybrid stem (conv backbone) under the ViT"),
        (getattr(vit, "num_prefix_tokens", 1) == 1 and getattr(vit, "cls_token", None) is not None,
         "vision: register tokens or no CLS token"),
        (not getattr(vit, "no_embed_class", False), "vision: position embeddings without the CLS slot"),
        (isinstance(getattr(vit, "norm_pre", torch.nn.Identity()), torch.nn.Identity), "vision: a pre-norm"),
        (all(isinstance(b.ls1, torch.nn.Identity) and isinstance(b.attn.q_norm, torch.nn.Identity)
             and b.attn.qkv.bias is not None for b in vit.blocks), "vision: layer scale, qk-norm or qkv without bias"),
    ]
    ad = cfg.adapters["image"]
    hidden = model.decoder.config.hidden_size
    checks += [
        (ad.reducer == "none", f"adapters.image.reducer={ad.reducer!r} (Llava's projector takes every patch)"),
        (not ad.pos_embed, "adapters.image.pos_embed (Llava's projector has no position embedding)"),
        (ad.type == "linear" or (ad.type == "mlp" and ad.num_layers == 2 and ad.hidden_dim in (None, hidden)),
         f"adapters.image: a {ad.type} adapter ({ad.num_layers} layers) is not Llava's 2-layer projector"),
    ]
    for ok, why in checks:
        if not ok:
            raise ExportError(f"{why}: cannot be a LlavaForConditionalGeneration part; train with model=llava "
                              "(mmgpt/presets/llava.yaml) for a model that exports")


def vit_state(vit) -> dict[str, torch.Tensor]:
    """A timm VisionTransformer's weights under transformers ``ViTModel`` names (qkv split)."""
    sd, d = vit.state_dict(), vit.embed_dim
    out = {"embeddings.cls_token": sd["cls_token"], "embeddings.position_embeddings": sd["pos_embed"],
           "embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
           "embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"]}
    names = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.o_proj",
             "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
    for i in range(len(vit.blocks)):
        src, dst = f"blocks.{i}.", f"layers.{i}."
        for part, w, b in zip(("q_proj", "k_proj", "v_proj"), sd[src + "attn.qkv.weight"].split(d),
                              sd[src + "attn.qkv.bias"].split(d)):
            out[f"{dst}attention.{part}.weight"], out[f"{dst}attention.{part}.bias"] = w, b
        for a, b in names.items():
            out[f"{dst}{b}.weight"], out[f"{dst}{b}.bias"] = sd[f"{src}{a}.weight"], sd[f"{src}{a}.bias"]
    if "norm.weight" in sd:  # pruned when select_layer is not the last block: unused, set to identity
        out["layernorm.weight"], out["layernorm.bias"] = sd["norm.weight"], sd["norm.bias"]
    else:
        out["layernorm.weight"], out["layernorm.bias"] = torch.ones(d), torch.zeros(d)
    out["pooler.dense.weight"], out["pooler.dense.bias"] = torch.eye(d), torch.zeros(d)  # unused by Llava
    return out


def llava_config(model):
    """The ``LlavaConfig`` of a model that passed :func:`check`."""
    from transformers import LlavaConfig, ViTConfig

    enc = model.encoders["image"]
    vit, cfg = enc.model, model.config
    vision = ViTConfig(hidden_size=vit.embed_dim, num_hidden_layers=len(vit.blocks),
                       num_attention_heads=vit.blocks[0].attn.num_heads,
                       intermediate_size=vit.blocks[0].mlp.fc1.out_features, hidden_act="gelu", layer_norm_eps=vit.norm.eps
                       if hasattr(vit.norm, "eps") else 1e-6, image_size=cfg.vision.img_size,
                       patch_size=vit.patch_embed.patch_size[0], qkv_bias=True,
                       tie_last_hidden_states=cfg.vision.select_layer == -1)
    from mmgpt.tokenizer import MEDIA_TOKENS

    return LlavaConfig(vision_config=vision, text_config=model.decoder.config.to_dict(),
                       image_token_id=model.tokenizer.convert_tokens_to_ids(MEDIA_TOKENS["image"][1]),
                       image_seq_length=enc.num_patches, vision_feature_layer=-1,
                       vision_feature_select_strategy="default",
                       projector_hidden_act="gelu" if cfg.adapters["image"].type == "mlp" else "linear",
                       multimodal_projector_bias=True, tie_word_embeddings=model.decoder.config.tie_word_embeddings)


def state_dict(model) -> dict[str, torch.Tensor]:
    """Every weight under ``LlavaForConditionalGeneration`` names."""
    out = {f"model.vision_tower.{k}": v for k, v in vit_state(model.encoders["image"].model).items()}
    proj = model.adapters["image"].proj
    layers = [proj] if isinstance(proj, torch.nn.Linear) else [m for m in proj.net if isinstance(m, torch.nn.Linear)]
    for i, layer in enumerate(layers, 1):
        out[f"model.multi_modal_projector.linear_{i}.weight"] = layer.weight
        out[f"model.multi_modal_projector.linear_{i}.bias"] = layer.bias
    if len(layers) == 1:  # linear adapter: the second projector layer is the identity
        h = layers[0].out_features
        out["model.multi_modal_projector.linear_2.weight"] = torch.eye(h)
        out["model.multi_modal_projector.linear_2.bias"] = torch.zeros(h)
    prefix = model.decoder.base_model_prefix
    for k, v in model.decoder.state_dict().items():
        out[k.replace(f"{prefix}.", "model.language_model.", 1) if k.startswith(f"{prefix}.") else k] = v
    return out


def processor(model):
    """A ``LlavaProcessor``: mmgpt's tokenizer and chat template, and the image processing of mmgpt."""
    import timm
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    from mmgpt.tokenizer import MEDIA_TOKENS

    enc = model.encoders["image"]
    data = timm.data.resolve_data_config({}, model=enc.model)
    size = {"height": enc.image_size, "width": enc.image_size}
    images = CLIPImageProcessorPil(size=size, crop_size=size, do_center_crop=False,
                                   resample=3 if data.get("interpolation", "bicubic") == "bicubic" else 2,
                                   image_mean=list(data["mean"]), image_std=list(data["std"]))
    from mmgpt.export.template import plain_text_tokenizer

    tok = plain_text_tokenizer(model.tokenizer, model.config.tokenizer.prefix_space,
                               model.config.tokenizer.media_after_text)
    return LlavaProcessor(image_processor=images, tokenizer=tok,
                          patch_size=enc.model.patch_embed.patch_size[0], vision_feature_select_strategy="default",
                          num_additional_image_tokens=1, image_token=MEDIA_TOKENS["image"][1],
                          chat_template=tok.chat_template)


def export(model, out: Path) -> list[str]:
    """Write the Llava folder into ``out`` (a fresh temporary folder); returns what it wrote.

    Raises:
        ExportError: the model does not map (:func:`check`), or the mapped weights do not load.
    """
    from transformers import GenerationConfig, LlavaForConditionalGeneration

    check(model)
    llava = LlavaForConditionalGeneration(llava_config(model))
    missing, unexpected = llava.load_state_dict(state_dict(model), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and llava.config.tie_word_embeddings)]
    if missing or unexpected:
        raise ExportError(f"the mapped weights do not fit Llava (missing {missing[:4]}, unexpected {unexpected[:4]})")
    llava.generation_config = GenerationConfig(eos_token_id=list(model.stop_token_ids),
                                               pad_token_id=model.pad_token_id, bos_token_id=None)
    llava.save_pretrained(str(out))
    processor(model).save_pretrained(str(out))
    return sorted(p.name for p in out.iterdir())
