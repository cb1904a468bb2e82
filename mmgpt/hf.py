"""mmgpt models as transformers classes: ``model_type: "mmgpt"``, registered with the Auto classes.

``import mmgpt`` registers them, so a folder written by ``mmgpt export MODEL OUT --format hf``
loads with transformers' own calls::

    import mmgpt  # registers model_type "mmgpt"
    from transformers import AutoModelForImageTextToText, AutoProcessor
    model = AutoModelForImageTextToText.from_pretrained(OUT)
    processor = AutoProcessor.from_pretrained(OUT)
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                           return_dict=True, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=32)
    processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

* :class:`MMGPTHFConfig` holds the mmgpt config (``mmgpt``), the vocabulary size and the special
  token ids.
* :class:`MMGPTForConditionalGeneration` is a ``PreTrainedModel`` around :class:`mmgpt.model.MMGPT`
  (its weights under ``model.``): ``forward`` gives the logits (and loss) of
  :meth:`MMGPT.forward`, ``generate`` runs mmgpt's one decoding path
  (:func:`mmgpt.generation.continue_ids`) and returns the prompt and the new tokens, as
  transformers' generate does.
* :class:`MMGPTProcessor` is a ``ProcessorMixin``: ``apply_chat_template(..., tokenize=True)``
  encodes chat messages exactly as mmgpt's processor does (media in the content parts: paths,
  PIL images, arrays, bytes, ``(waveform, rate)``); ``processor(text=..., images=..., audio=...)``
  takes the rendered template and fills each ``<|image_pad|>`` / ``<|audio_pad|>`` with its item.

Model inputs per modality ``m`` (``image``, ``audio``): ``{m}_values`` (the items' encoder
inputs, padded) and ``{m}_lengths``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    AutoProcessor,
    BatchFeature,
    GenerationMixin,
    PretrainedConfig,
    PreTrainedModel,
    ProcessorMixin,
)
from transformers.modeling_outputs import CausalLMOutputWithPast

MODEL_TYPE = "mmgpt"


class MMGPTHFConfig(PretrainedConfig):
    """transformers config of an mmgpt model.

    Args:
        mmgpt: the portable :class:`~mmgpt.config.MMGPTConfig` as a dict (decoder and audio
            encoder configs inlined).
        vocab_size: the tokenizer's size (the decoder's embedding rows).
        token_ids: mmgpt's special tokens and their ids.
    """

    model_type = MODEL_TYPE

    def __init__(self, mmgpt: dict | None = None, vocab_size: int = 0, token_ids: dict[str, int] | None = None,
                 **kwargs) -> None:
        self.mmgpt = mmgpt or {}
        self.vocab_size = vocab_size
        self.token_ids = dict(token_ids or {})
        super().__init__(**kwargs)

    def mmgpt_config(self):
        """The :class:`~mmgpt.config.MMGPTConfig` (every value checked).

        Raises:
            ConfigError: a key or value mmgpt does not allow.
        """
        from mmgpt.config import MMGPTConfig

        return MMGPTConfig.from_dict(copy.deepcopy(self.mmgpt))


def media_inputs(modalities, kwargs: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Pop ``{m}_values`` / ``{m}_lengths`` from ``kwargs``: mmgpt's ``media`` argument."""
    media = {}
    for m in modalities:
        values, lengths = kwargs.pop(f"{m}_values", None), kwargs.pop(f"{m}_lengths", None)
        if values is not None:
            media[m] = (values, lengths if lengths is not None else torch.full((values.shape[0],), values.shape[-1]))
    return media


class MMGPTForConditionalGeneration(PreTrainedModel, GenerationMixin):
    """An mmgpt model (images and audio in, text out) as a transformers model.

    Args:
        config: the :class:`MMGPTHFConfig`.
        model: an :class:`~mmgpt.model.MMGPT` to wrap (its modules are shared, not copied);
            default a new one built from ``config`` (weights come from ``from_pretrained``).
    """

    config_class = MMGPTHFConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    input_modalities = ("image", "audio", "text")
    _supports_sdpa = True

    def __init__(self, config: MMGPTHFConfig, model=None) -> None:
        super().__init__(config)
        if model is None:
            from mmgpt.model import MMGPT

            model = MMGPT(config.mmgpt_config(), load_weights=False, vocab=(config.vocab_size, config.token_ids))
        self.model = model
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        """mmgpt's parts initialise themselves when built; loading fills every weight."""

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.model.decoder.get_input_embeddings()

    def set_input_embeddings(self, value: torch.nn.Module) -> None:
        self.model.decoder.set_input_embeddings(value)

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.model.decoder.get_output_embeddings()

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs: Any) -> CausalLMOutputWithPast:
        """Logits (B, T, V) of ``input_ids`` with the media of ``{m}_values`` / ``{m}_lengths``
        in their placeholders; with ``labels`` the mean cross-entropy of the next token (-100
        ignored). Other keyword arguments (``cache``, ``use_cache``...) go to the decoder."""
        media = media_inputs(self.model.encoders, kwargs)
        if inputs_embeds is None:
            inputs_embeds = self.model.embed(input_ids, media)
        return self.model.decoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                  position_ids=position_ids, labels=labels, **kwargs)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                 generation_config=None, **kwargs: Any):
        """The prompt and its continuation, (B, T + new), as transformers' ``generate`` returns:
        mmgpt's decoding (:func:`mmgpt.generation.continue_ids`) with this model's
        ``generation_config`` updated by ``kwargs`` (``max_new_tokens``, ``do_sample``,
        ``num_beams``, a ``streamer``...)."""
        from mmgpt.generation import continue_ids

        if input_ids is None:
            raise ValueError("generate needs input_ids (from the processor)")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        media = media_inputs(self.model.encoders, kwargs)
        config = copy.deepcopy(generation_config or self.generation_config)
        rest = config.update(**kwargs)  # generation settings; the rest (streamer, stopping_criteria) pass on
        out = continue_ids(self.model, input_ids, attention_mask, media, generation_config=config, **rest)
        if isinstance(out, torch.Tensor):
            return torch.cat([input_ids, out], dim=1)
        out.sequences = torch.cat([input_ids.repeat_interleave(out.sequences.shape[0] // input_ids.shape[0], 0),
                                   out.sequences], dim=1)
        return out

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, config: MMGPTHFConfig | None = None,
                        dtype=None, device_map=None, **kwargs) -> MMGPTForConditionalGeneration:
        """Load a folder written by ``mmgpt export --format hf`` (or by ``save_pretrained``), or a
        hub repo of one: the model is built on the CPU and every weight is read from safetensors
        (nothing is unpickled), its dtype and shape checked.

        Args:
            pretrained_model_name_or_path: a local folder, or a hub name (``revision``,
                ``cache_dir``, ``token``, ``local_files_only`` in ``kwargs`` go to the download).
            config: the config to use instead of the folder's.
            dtype: a ``torch.dtype`` (or ``"auto"``: as saved) to cast to; default float32.
            device_map: one device (``"cpu"``, ``"cuda"``, ``"auto"``: CUDA when there is one).

        Raises:
            CheckpointError: missing, damaged or mismatched weight files.
            TypeError: an argument this loader does not take.
        """
        if (kwargs.pop("adapter_kwargs", None) or {}).get("_adapter_model_path"):
            raise TypeError("a PEFT adapter folder: load the export, then peft.PeftModel.from_pretrained(model, path)")
        kwargs = {k: v for k, v in kwargs.items() if v not in (None, "") and not k.startswith("_")}
        path = _resolve(pretrained_model_name_or_path, kwargs)
        dtype = dtype if dtype is not None else kwargs.pop("torch_dtype", None)
        for ignored in ("trust_remote_code", "low_cpu_mem_usage", "attn_implementation"):
            kwargs.pop(ignored, None)
        if model_args or kwargs:
            raise TypeError(f"{cls.__name__}.from_pretrained does not take {sorted(kwargs) or model_args}")
        config = config or cls.config_class.from_pretrained(path)
        model = cls(config)
        _load_weights(model, path)
        if (path / "generation_config.json").is_file():
            from transformers import GenerationConfig

            model.generation_config = GenerationConfig.from_pretrained(path)
        if dtype not in (None, "auto"):
            model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
        if device_map is not None:
            if isinstance(device_map, dict):
                raise TypeError("device_map: one device (a dict of per-module devices is not supported)")
            auto = device_map == "auto"
            model.to(("cuda" if torch.cuda.is_available() else "cpu") if auto else device_map)
        return model.eval()

    @classmethod
    def from_mmgpt(cls, model) -> MMGPTForConditionalGeneration:
        """Wrap an :class:`~mmgpt.model.MMGPT` (shared modules) with the config that rebuilds it."""
        from mmgpt.pretrained import portable_config
        from mmgpt.tokenizer import special_ids

        config = MMGPTHFConfig(mmgpt=portable_config(model).to_dict(), vocab_size=len(model.tokenizer),
                               token_ids=special_ids(model.tokenizer),
                               tie_word_embeddings=bool(getattr(model.decoder.config, "tie_word_embeddings", False)))
        wrapped = cls(config, model)
        from transformers import GenerationConfig

        wrapped.generation_config = GenerationConfig(eos_token_id=list(model.stop_token_ids),
                                                     pad_token_id=model.pad_token_id, bos_token_id=None)
        return wrapped


class MMGPTProcessor(ProcessorMixin):
    """Tokenizer and media preparation of an mmgpt model, transformers-style.

    Args:
        tokenizer: the model's tokenizer (an export's keeps typed special tokens plain text,
            :mod:`mmgpt.export.template`).
        mmgpt: the model's :class:`~mmgpt.config.MMGPTConfig` as a dict (image size, clip
            windows, adapter token counts).
        chat_template: the tokenizer's chat template.
    """

    def __init__(self, tokenizer=None, mmgpt: dict | None = None, chat_template: str | None = None, **kwargs):
        self.mmgpt = mmgpt or {}
        super().__init__(tokenizer, chat_template=chat_template)
        self._inner = None

    @property
    def inner(self):
        """mmgpt's :class:`~mmgpt.processor.Processor`, its encoders built on the meta device
        (their preparation and token counts only: no weights)."""
        if self._inner is None:
            from mmgpt.config import MMGPTConfig
            from mmgpt.modalities import MODALITIES
            from mmgpt.processor import Processor

            cfg = MMGPTConfig.from_dict(copy.deepcopy(self.mmgpt))
            with torch.device("meta"):
                encoders = {m: MODALITIES[m].encoder(cfg.encoder_config(m), False) for m in cfg.modalities}
            self._inner = Processor(self.tokenizer, cfg, encoders)
        return self._inner

    def decode(self, ids, skip_special_tokens: bool = True, **kwargs) -> str:
        """Text of ``ids``; with the model's prefix space (:mod:`mmgpt.tokenizer`) the one leading
        space of an answer is dropped, as mmgpt's own answers drop it."""
        text = self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens, **kwargs)
        return text[1:] if self.inner.prefix_space and text.startswith(" ") else text

    def batch_decode(self, rows, skip_special_tokens: bool = True, **kwargs) -> list[str]:
        return [self.decode(r, skip_special_tokens=skip_special_tokens, **kwargs) for r in rows]

    def _batch(self, encoded: list, padding_side: str | None) -> BatchFeature:
        from mmgpt.batching import collate

        pad = self.tokenizer.pad_token_id
        batch = collate(encoded, pad, padding_side=padding_side or "left")
        data = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        for m, (values, lengths) in (batch.get("media") or {}).items():
            data[f"{m}_values"], data[f"{m}_lengths"] = values, lengths
        return BatchFeature(data, tensor_type="pt")

    def apply_chat_template(self, conversation, chat_template: str | None = None, **kwargs):
        """With ``tokenize=True``: the model inputs of one conversation (or a list of them), encoded
        as mmgpt encodes them (``add_generation_prompt``; ``padding_side``, default left);
        otherwise the rendered text, as the tokenizer's template renders it."""
        if not kwargs.get("tokenize", False):
            kwargs.pop("return_dict", None)
            return self.tokenizer.apply_chat_template(conversation, chat_template=chat_template, **kwargs)
        chats = [conversation] if conversation and isinstance(conversation[0], dict) else list(conversation)
        gen = bool(kwargs.get("add_generation_prompt", False))
        batch = self._batch([self.inner(c, add_generation_prompt=gen) for c in chats], kwargs.get("padding_side"))
        return batch if kwargs.get("return_dict", True) else batch["input_ids"]

    def __call__(self, text=None, images=None, audio=None, padding_side: str | None = None, **kwargs) -> BatchFeature:
        """Model inputs of rendered text(s): each ``<|m_pad|>`` placeholder takes the next item of
        ``images`` / ``audio`` (in order) and becomes that item's N tokens.

        Raises:
            ValueError: more or fewer placeholders than items.
        """
        from mmgpt.batching import IGNORE
        from mmgpt.datasets.schema import Segment
        from mmgpt.processor import Encoded

        texts = [text] if isinstance(text, str) else list(text or [])
        queues = {"image": iter(_flat(images)), "audio": iter(_flat(audio))}
        inner = self.inner
        pads = {inner.ids[tokens[1]]: m for m, tokens in _media_tokens(inner.encoders).items()}
        rows = []
        for t in texts:
            ids = self.tokenizer(t, add_special_tokens=False)["input_ids"]
            if inner.bos and ids[:1] != inner.bos:
                ids = inner.bos + ids
            out, media = [], {}
            for i in ids:
                m = pads.get(i)
                if m is None:
                    out.append(i)
                    continue
                item = next(queues[m], None)
                if item is None:
                    raise ValueError(f"the text has more <|{m}_pad|> placeholders than {m} items")
                values = inner.load_media(Segment(type=m, media=item))
                media.setdefault(m, []).append(_item(values))
                out += [i] * inner.num_media_tokens(m, values.shape[-1])
            rows.append(Encoded(torch.tensor(out), torch.full((len(out),), IGNORE), media))
        for m, q in queues.items():
            if next(q, None) is not None:
                raise ValueError(f"more {m} items than <|{m}_pad|> placeholders in the text")
        return self._batch(rows, padding_side)


def _resolve(name, kwargs: dict):
    """A local folder, or the snapshot of a hub repo (config, weights, processor files only)."""
    from pathlib import Path

    path = Path(name)
    hub = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "token", "local_files_only", "force_download",
                                      "proxies") if k in kwargs}
    sub = kwargs.pop("subfolder", "")
    if path.is_dir():
        return path / sub
    if sub:
        hub["allow_patterns"] = [f"{sub}/*"]
    from huggingface_hub import snapshot_download

    hub.setdefault("allow_patterns", ["*.json", "*.safetensors", "*.jinja", "*.md"])
    return Path(snapshot_download(str(name), **hub)) / sub


def _load_weights(model: torch.nn.Module, path) -> None:
    """Every weight of ``model`` from ``model.safetensors`` (or the shards of its index); a name
    left out must be a tied copy of one that was read.

    Raises:
        CheckpointError: no weights, or they do not fit the model.
    """
    import json

    from safetensors.torch import load_file

    from mmgpt.errors import CheckpointError
    from mmgpt.pretrained import check_tensors

    index = path / "model.safetensors.index.json"
    try:
        files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() \
            else ["model.safetensors"]
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{index}: cannot read the shard index: {e}") from None
    state = {}
    for name in files:
        file = path / name
        if not file.is_file() or file.resolve().parent != path.resolve():
            raise CheckpointError(f"{file}: weights not found in {path}")
        check_tensors(file, model)
        try:
            state.update(load_file(str(file)))
        except Exception as e:  # safetensors raises its own error type for a damaged file
            raise CheckpointError(f"{file}: cannot read weights: {e}") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    own = dict(model.named_parameters())  # tied weights appear once, under their first name
    missing = [k for k in missing if k in own or k in dict(model.named_buffers())]
    if missing or unexpected:
        raise CheckpointError(f"{path}: the weights do not fit the config (missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]})")


def _flat(items) -> list:
    if items is None:
        return []
    if not isinstance(items, (list, tuple)) or (isinstance(items, tuple) and len(items) == 2
                                                 and isinstance(items[1], int)):
        return [items]  # one item ((waveform, rate) is one clip)
    return [x for it in items for x in _flat(it)]


def _item(values: torch.Tensor):
    from mmgpt.batching import MediaItem

    return MediaItem(values=values)


def _media_tokens(encoders) -> dict[str, tuple[str, str, str]]:
    from mmgpt.tokenizer import MEDIA_TOKENS

    return {m: MEDIA_TOKENS[m] for m in encoders}


def register() -> None:
    """Register ``model_type: "mmgpt"`` with AutoConfig, AutoModelForImageTextToText and
    AutoProcessor (done by ``import mmgpt``; repeated calls do nothing)."""
    try:
        AutoConfig.register(MODEL_TYPE, MMGPTHFConfig)
    except ValueError:  # already registered
        return
    AutoModelForImageTextToText.register(MMGPTHFConfig, MMGPTForConditionalGeneration)
    AutoProcessor.register(MMGPTHFConfig, MMGPTProcessor)
