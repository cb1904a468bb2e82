"""MMGPT: encoders and adapters keyed by modality, merged into any transformers causal LM.

Shapes: B rows, T tokens, H decoder width, V vocabulary; per modality: I items in the batch,
N tokens per item after the adapter. Flow::

    input_ids (B, T) -> embed_tokens -> (B, T, H)
    pixel_values (I, 3, H_img, W_img) -> VisionEncoder -> (I, P, D) -> Adapter -> (I, N, H) -+
    audio_values (I, S) + lengths -> AudioEncoder -> (I, T_a, D) -> Adapter -> (I, N_i, H) --+-> masked_scatter
                                          into the <|image_pad|> / <|audio_pad|> positions -> decoder -> logits (B, T, V)

The number of pad tokens must equal the number of feature vectors, or ``ValueError``.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mmgpt.adapters import Adapter
from mmgpt.batching import block_causal_mask
from mmgpt.config import MMGPTConfig
from mmgpt.decoder import build_decoder
from mmgpt.encoders.audio import AudioEncoder
from mmgpt.encoders.vision import VisionEncoder
from mmgpt.processor import IGNORE, Processor
from mmgpt.tokenizer import (
    EOS,
    IM_END,
    MEDIA_TOKENS,
    PAD,
    byte_tokenizer,
    chat_template,
    load_tokenizer,
    special_ids,
)

log = logging.getLogger(__name__)


@dataclass
class MMGPTOutput:
    """``loss``: mean cross-entropy over target tokens (None without labels);
    ``loss_sum`` and ``num_targets`` let callers average over several batches exactly (with
    ``loss_weights``, the weighted sum and the sum of the weights)."""

    logits: torch.Tensor | None
    loss: torch.Tensor | None = None
    loss_sum: torch.Tensor | None = None
    num_targets: int | float = 0


class MMGPT(nn.Module):
    """A decoder LM that reads images and audio through encoder + adapter per modality.

    Args:
        config: the model config.
        tokenizer: tokenizer with mmgpt's special tokens; default built from ``config.tokenizer``.
        load_weights: load pretrained parts named in the config (off when a checkpoint will
            supply every weight).

    Build with :meth:`from_config` or :meth:`from_pretrained` / :func:`load`.
    """

    def __init__(self, config: MMGPTConfig, tokenizer=None, load_weights: bool = True) -> None:
        super().__init__()
        config = copy.deepcopy(config)  # the model owns its config; the caller's is left as it was
        self.config = config
        if tokenizer is None:
            tokenizer = load_tokenizer(config.tokenizer.path) if config.tokenizer.path else byte_tokenizer()
        # Resolved once and kept in the config, so a saved model encodes text as it was trained.
        config.tokenizer.prefix_space = config.tokenizer.resolved_prefix_space()
        tokenizer.chat_template = chat_template(config.tokenizer.prefix_space, config.tokenizer.media_after_text)
        self.tokenizer = tokenizer
        ids = special_ids(tokenizer)
        self.media_token_ids = {m: ids[MEDIA_TOKENS[m][1]] for m in config.modalities}
        # Set by the trainer under FSDP2: every encoder and adapter takes part in every training
        # step (a modality absent from a batch runs on a blank input and adds 0 to the output), so
        # all processes reduce the same gradients. DDP instead tolerates unused parameters.
        self.use_every_part = False
        self.stop_token_ids = [ids[IM_END], ids[EOS]]
        self.pad_token_id = ids[PAD]
        self.encoders = nn.ModuleDict()
        if config.vision is not None:
            self.encoders["image"] = VisionEncoder(config.vision, load_weights)
        if config.audio is not None:
            self.encoders["audio"] = AudioEncoder(config.audio, load_weights)
        self.decoder = build_decoder(
            config.decoder, len(tokenizer), config.max_length, {"eos": ids[EOS], "pad": ids[PAD]}, load_weights
        )
        hidden = self.decoder.get_input_embeddings().embedding_dim
        self.adapters = nn.ModuleDict(
            {m: Adapter(config.adapters[m], self.encoders[m].output_dim, hidden, m,
                        self.encoders[m].num_tokens() if m == "image" else None) for m in config.modalities}
        )
        self._processor: Processor | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: MMGPTConfig | str | Path, tokenizer=None, overrides: list[str] | None = None) -> MMGPT:
        """Build a model from a config object or a YAML preset path (random or pretrained parts)."""
        if not isinstance(config, MMGPTConfig):
            config = MMGPTConfig.from_yaml(config, overrides)
        return cls(config, tokenizer)

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu") -> MMGPT:
        """Restore a model saved with :meth:`save_pretrained`.

        Raises:
            CheckpointError: missing or damaged files.
        """
        from mmgpt.pretrained import load_model

        return load_model(cls, path, map_location)

    def save_pretrained(self, path: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """Write ``config.json``, ``model.safetensors`` and the tokenizer files atomically
        (``state_dict``: full weights to write instead of the model's own, e.g. gathered from FSDP2)."""
        from mmgpt.pretrained import save_model

        return save_model(self, path, state_dict)

    @property
    def processor(self) -> Processor:
        """The processor matching this model's tokenizer, encoders and adapters."""
        if self._processor is None:
            enc = self.encoders["image"] if "image" in self.encoders else None  # noqa: SIM401 - ModuleDict
            self._processor = Processor(
                self.tokenizer, self.config,
                image_transform=enc.image_transform() if enc is not None else None,
                image_patches=enc.num_tokens() if enc is not None else None,
            )
        return self._processor

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def parts(self) -> dict[str, nn.Module]:
        """Named parts (``encoders.image``, ``adapters.audio``, ``decoder``...) for freezing and per-part LR."""
        out: dict[str, nn.Module] = {f"encoders.{m}": e for m, e in self.encoders.items()}
        out.update({f"adapters.{m}": a for m, a in self.adapters.items()})
        out["decoder"] = self.decoder
        return out

    def set_trainable(self, flags: dict[str, bool]) -> None:
        """Freeze or unfreeze parts by name; a key may name a group (``encoders``, ``adapters``).

        Raises:
            KeyError: a name matches no part.
        """
        parts = self.parts()
        for key, flag in flags.items():
            hit = [p for name, p in parts.items() if name == key or name.startswith(key + ".")]
            if not hit and key not in ("encoders.image", "encoders.audio", "adapters.image", "adapters.audio"):
                raise KeyError(f"unknown model part {key!r}; parts are {', '.join(parts)}")
            for module in hit:
                module.requires_grad_(flag)

    # ------------------------------------------------------------------ forward
    def encode_media(self, modality: str, batch: dict) -> torch.Tensor:
        """Adapter outputs of every item of ``modality`` in the batch, in order: (sum of N, H).

        Uses ``batch["features"][modality]`` (precomputed encoder features and lengths, from the
        frozen-feature cache) when present, else runs the encoder.
        """
        cached = (batch.get("features") or {}).get(modality)
        if cached is not None:
            feats, lengths = cached
        elif modality == "image":
            feats = self.encoders["image"](batch["pixel_values"])  # (I, P, D)
            lengths = None
        else:
            feats, lengths = self.encoders["audio"](batch["audio_values"], batch["audio_lengths"])  # (I, T_a, D)
        out, out_len = self.adapters[modality](feats, lengths)  # (I, N, H), (I,)
        if bool((out_len == out.shape[1]).all()):
            return out.reshape(-1, out.shape[-1])  # (I*N, H)
        keep = torch.arange(out.shape[1], device=out.device)[None, :] < out_len.to(out.device)[:, None]  # (I, N)
        return out[keep]  # (sum N_i, H)

    def _blank_media(self, modality: str, device: torch.device) -> torch.Tensor:
        """Adapter output of one blank image or one second of silence."""
        if modality == "image":
            size = self.config.vision.img_size
            return self.encode_media("image", {"pixel_values": torch.zeros(1, 3, size, size, device=device)})
        return self.encode_media("audio", {"audio_values": torch.zeros(1, 16_000, device=device),
                                           "audio_lengths": torch.tensor([16_000])})

    def embed(self, batch: dict) -> torch.Tensor:
        """Token embeddings with media features scattered into the pad positions: (B, T, H).

        Raises:
            ValueError: the number of pad tokens of a modality differs from its feature count.
        """
        input_ids = batch["input_ids"]
        embeds = self.decoder.get_input_embeddings()(input_ids)  # (B, T, H)
        for modality, token_id in self.media_token_ids.items():
            mask = input_ids == token_id  # (B, T)
            n_pad = int(mask.sum())
            has_media = (batch.get("features") or {}).get(modality) is not None or (
                batch.get("pixel_values" if modality == "image" else "audio_values") is not None
            )
            if n_pad == 0 and not has_media:
                if self.use_every_part and self.training:
                    embeds = embeds + 0.0 * self._blank_media(modality, embeds.device).sum().to(embeds.dtype)
                continue
            if not has_media:
                raise ValueError(f"{modality}: input_ids hold {n_pad} {modality} pad tokens but no {modality} was given")
            feats = self.encode_media(modality, batch)
            if feats.shape[0] != n_pad:
                raise ValueError(
                    f"{modality}: input_ids hold {n_pad} {modality} pad tokens but the {modality} features "
                    f"give {feats.shape[0]} vectors; the placeholders must match the media"
                )
            embeds = embeds.masked_scatter(mask[..., None], feats.to(embeds.dtype))
        return embeds

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                pixel_values: torch.Tensor | None = None, audio_values: torch.Tensor | None = None,
                audio_lengths: torch.Tensor | None = None, features: dict | None = None,
                sequence_ids: torch.Tensor | None = None, loss_weights: torch.Tensor | None = None,
                **unused) -> MMGPTOutput:
        """Logits and (with ``labels``) the loss, computed here and only here.

        Args:
            input_ids: (B, T) token ids with media spans expanded.
            attention_mask: (B, T) padding mask, or (B, 1, T, T) additive mask for packed rows.
            position_ids: (B, T), restarting per packed sample.
            labels: (B, T) targets aligned with ``input_ids``; -100 is ignored. Shifted here.
            pixel_values: (I_img, 3, H, W). audio_values: (I_aud, S) with audio_lengths (I_aud,).
            features: precomputed encoder features per modality ``{m: (feats, lengths)}``.
            sequence_ids: (B, T) sample index per position of a packed batch (-1 on padding);
                replaces ``attention_mask`` with a block-diagonal causal mask.
            loss_weights: (B, T) weight of each target, aligned with ``labels`` (per-sample loss
                weighting, see :mod:`mmgpt.batching`); then ``loss_sum`` is the weighted
                sum and ``num_targets`` the sum of the weights.

        Returns:
            MMGPTOutput with logits (B, T, V) and, with labels, loss = sum / number of targets.
        """
        batch = {"input_ids": input_ids, "pixel_values": pixel_values, "audio_values": audio_values,
                 "audio_lengths": audio_lengths, "features": features}
        embeds = self.embed(batch)
        if sequence_ids is not None:
            sdpa = self.decoder.config._attn_implementation == "sdpa"
            attention_mask = block_causal_mask(sequence_ids, boolean=sdpa, dtype=embeds.dtype)  # (B, 1, T, T)
        out = self.decoder(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids,
                           use_cache=False)
        logits = out.logits  # (B, T, V)
        if labels is None:
            return MMGPTOutput(logits)
        targets = labels[:, 1:]  # (B, T-1): token t+1 is predicted at position t
        flat = logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1)
        if loss_weights is None:
            n = int((targets != IGNORE).sum())
            loss_sum = F.cross_entropy(*flat, ignore_index=IGNORE, reduction="sum")
        else:
            w = loss_weights[:, 1:].reshape(-1).float()  # (B*(T-1),) zero where ignored
            n = float(w.sum())
            loss_sum = (F.cross_entropy(*flat, ignore_index=IGNORE, reduction="none") * w).sum()
        return MMGPTOutput(logits, loss_sum / max(n, 1e-12), loss_sum, n)

    # ------------------------------------------------------------------ generation API
    def generate(self, prompts, **kwargs):
        """Batched generation; see :func:`mmgpt.generation.generate`."""
        from mmgpt.generation import generate

        return generate(self, prompts, **kwargs)

    def chat(self, messages: list[dict], stream: bool = False, **kwargs):
        """Answer a chat (transformers content-list messages); see :func:`mmgpt.generation.chat`."""
        from mmgpt.generation import chat

        return chat(self, messages, stream=stream, **kwargs)

    def caption(self, image=None, audio=None, prompt: str | None = None, **kwargs) -> str:
        """Caption an image or a clip; see :func:`mmgpt.generation.caption`."""
        from mmgpt.generation import caption

        return caption(self, image=image, audio=audio, prompt=prompt, **kwargs)

    def num_parameters(self, trainable_only: bool = False) -> int:
        seen, total = set(), 0
        for p in self.parameters():
            if id(p) in seen or (trainable_only and not p.requires_grad):
                continue
            seen.add(id(p))
            total += p.numel()
        return total


def load(path: str | Path, map_location: str | torch.device = "cpu") -> MMGPT:
    """Load an mmgpt checkpoint directory (``runs/.../final``). Alias of :meth:`MMGPT.from_pretrained`."""
    return MMGPT.from_pretrained(path, map_location)
