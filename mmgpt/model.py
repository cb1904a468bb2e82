"""MMGPT: encoders and adapters keyed by modality, merged into any transformers causal LM.

Shapes: B rows, T tokens, H decoder width, V vocabulary; per modality: I items in the batch,
L their longest length, P encoder tokens, D encoder width, N tokens per item after the adapter.
Flow, for every modality of the registry (:mod:`mmgpt.modalities`) alike::

    input_ids (B, T) -> embed_tokens -> (B, T, H)
    media[m] = values (I, ..., L) + lengths (I,) -> encoders[m] -> (I, P, D) -> adapters[m] -> (I, N, H)
        (or features[m], the frozen encoder's output from the feature cache)
    -> masked_scatter into the <|m_pad|> positions -> decoder -> logits (B, T, V)

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
from mmgpt.batching import IGNORE, block_causal_mask
from mmgpt.config import MMGPTConfig
from mmgpt.decoder import build_decoder
from mmgpt.errors import ConfigError
from mmgpt.modalities import MODALITIES
from mmgpt.processor import Processor
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
    """``loss``: mean cross-entropy over target tokens (None without labels); ``loss_sum`` and
    ``target_weight`` (the number of targets; with ``loss_weights``, the weighted sum and the sum
    of the weights) let callers average over several batches exactly."""

    logits: torch.Tensor | None
    loss: torch.Tensor | None = None
    loss_sum: torch.Tensor | None = None
    target_weight: int | float = 0


class MMGPT(nn.Module):
    """A decoder LM that reads images and audio through encoder + adapter per modality.

    Args:
        config: the model config.
        tokenizer: tokenizer with mmgpt's special tokens; default built from ``config.tokenizer``.
        load_weights: load pretrained parts named in the config (off when a checkpoint will
            supply every weight).
        vocab: ``(vocabulary size, special token ids)`` instead of a tokenizer: the model
            alone, without text processing (:mod:`mmgpt.hf` builds it so).

    Build with :meth:`from_config` or :meth:`from_pretrained` / :func:`load`.
    """

    def __init__(self, config: MMGPTConfig, tokenizer=None, load_weights: bool = True,
                 vocab: tuple[int, dict[str, int]] | None = None) -> None:
        super().__init__()
        config = copy.deepcopy(config)  # the model owns its config; the caller's is left as it was
        self.config = config
        # Resolved once and kept in the config, so a saved model encodes text as it was trained.
        config.tokenizer.prefix_space = config.tokenizer.resolved_prefix_space()
        if vocab is None:
            if tokenizer is None:
                tokenizer = load_tokenizer(config.tokenizer.path) if config.tokenizer.path else byte_tokenizer()
            tokenizer.chat_template = chat_template(config.tokenizer.prefix_space, config.tokenizer.media_after_text)
            vocab = (len(tokenizer), special_ids(tokenizer))
        self.tokenizer = tokenizer  # None when built from ``vocab`` alone (mmgpt.hf: the processor holds it)
        ids = vocab[1]
        self.media_token_ids = {m: ids[MEDIA_TOKENS[m][1]] for m in config.modalities}
        # Set by the trainer under FSDP2: every encoder and adapter takes part in every training
        # step (a modality absent from a batch runs on a blank input and adds 0 to the output), so
        # all processes reduce the same gradients. DDP instead tolerates unused parameters.
        self.use_every_part = False
        self.stop_token_ids = [ids[IM_END], ids[EOS]]
        self.pad_token_id = ids[PAD]
        self.encoders = nn.ModuleDict({m: MODALITIES[m].encoder(config.encoder_config(m), load_weights)
                                       for m in config.modalities})
        self.decoder = build_decoder(
            config.decoder, vocab[0], config.max_length, {"eos": ids[EOS], "pad": ids[PAD]}, load_weights
        )
        hidden = self.decoder.get_input_embeddings().embedding_dim
        self.adapters = nn.ModuleDict({
            m: Adapter(config.adapters[m], enc.output_dim, hidden, enc.token_layout, enc.fixed_tokens, m)
            for m, enc in self.encoders.items()})
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
            self._processor = Processor(self.tokenizer, self.config, self.encoders)
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

        A registered modality this model leaves out (``encoders.audio`` of an image-only model)
        matches nothing and is not an error, so one recipe serves both.

        Raises:
            ConfigError: a name matches no part.
        """
        parts = self.parts()
        optional = {f"{group}.{m}" for group in ("encoders", "adapters") for m in MODALITIES}
        for key, flag in flags.items():
            hit = [p for name, p in parts.items() if name == key or name.startswith(key + ".")]
            if not hit and key not in optional:
                raise ConfigError(f"trainable.{key}: unknown model part; parts are {', '.join(parts)}")
            for module in hit:
                module.requires_grad_(flag)

    # ------------------------------------------------------------------ forward
    def media_embeddings(self, modality: str, media: dict | None, features: dict | None) -> torch.Tensor:
        """Adapter outputs of every item of ``modality`` in the batch, in order: (sum of N, H).

        Uses ``features[modality]`` (the frozen encoder's output, from the feature cache) when
        given, else runs the encoder on ``media[modality]``.
        """
        if features and modality in features:
            feats, lengths = features[modality]
        else:
            values, lengths = media[modality]
            feats, lengths = self.encoders[modality](values, lengths)  # (I, P, D), (I,)
        out, out_len = self.adapters[modality](feats, lengths)  # (I, N, H), (I,)
        if bool((out_len == out.shape[1]).all()):
            return out.reshape(-1, out.shape[-1])  # (I*N, H)
        keep = torch.arange(out.shape[1], device=out.device)[None, :] < out_len.to(out.device)[:, None]  # (I, N)
        return out[keep]  # (sum N_i, H)

    def embed(self, input_ids: torch.Tensor, media: dict | None = None, features: dict | None = None) -> torch.Tensor:
        """Token embeddings with media features scattered into the pad positions: (B, T, H).

        Raises:
            ValueError: the number of pad tokens of a modality differs from its feature count.
        """
        embeds = self.decoder.get_input_embeddings()(input_ids)  # (B, T, H)
        for modality, token_id in self.media_token_ids.items():
            mask = input_ids == token_id  # (B, T)
            n_pad = int(mask.sum())
            given = modality in (media or {}) or modality in (features or {})
            if n_pad == 0 and not given:
                if self.use_every_part and self.training:  # FSDP2: every part joins every step
                    blank = {modality: self.encoders[modality].dummy_input(embeds.device)}
                    embeds = embeds + 0.0 * self.media_embeddings(modality, blank, None).sum().to(embeds.dtype)
                continue
            if not given:
                raise ValueError(f"{modality}: input_ids hold {n_pad} {modality} pad tokens but no {modality} was given")
            feats = self.media_embeddings(modality, media, features)
            if feats.shape[0] != n_pad:
                raise ValueError(
                    f"{modality}: input_ids hold {n_pad} {modality} pad tokens but the {modality} features "
                    f"give {feats.shape[0]} vectors; the placeholders must match the media"
                )
            embeds = embeds.masked_scatter(mask[..., None], feats.to(embeds.dtype))
        return embeds

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                media: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                features: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                sequence_ids: torch.Tensor | None = None, loss_weights: torch.Tensor | None = None) -> MMGPTOutput:
        """Logits and (with ``labels``) the loss, computed here and only here.

        Args:
            input_ids: (B, T) token ids with media spans expanded.
            attention_mask: (B, T) padding mask, or (B, 1, T, T) additive mask for packed rows.
            position_ids: (B, T), restarting per packed sample.
            labels: (B, T) targets aligned with ``input_ids``; -100 is ignored. Shifted here.
            media: per modality ``(values (I, ..., L), lengths (I,))``, the encoder inputs
                (:func:`mmgpt.batching.pad_stack` of the processor's items).
            features: per modality ``(features (I, P, D), lengths (I,))``: the frozen encoder's
                outputs from the feature cache, used instead of its ``media``.
            sequence_ids: (B, T) sample index per position of a packed batch (-1 on padding);
                replaces ``attention_mask`` with a block-diagonal causal mask.
            loss_weights: (B, T) weight of each target, aligned with ``labels`` (per-sample loss
                weighting, see :mod:`mmgpt.batching`); then ``loss_sum`` is the weighted
                sum and ``target_weight`` the sum of the weights.

        Returns:
            MMGPTOutput with logits (B, T, V) and, with labels, loss = sum / number of targets.
        """
        embeds = self.embed(input_ids, media, features)
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

    def caption(self, prompt: str | None = None, **kwargs) -> str:
        """Caption one item given by its modality's name (``image=``, ``audio=``); see
        :func:`mmgpt.generation.caption`."""
        from mmgpt.generation import caption

        return caption(self, prompt=prompt, **kwargs)

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
