"""Tokenizers: any transformers tokenizer, or a byte-level BPE built with ``tokenizers``.

Every mmgpt tokenizer carries the same special tokens and a ChatML chat template that knows
image and audio parts, so ``tokenizer.apply_chat_template(messages)`` renders what the
processor builds (each media item as start + one pad + end; the processor expands the pad to
the item's N tokens). Special tokens:

    <|endoftext|>  end of a document (eos)      <|pad|>  padding
    <|im_start|> <|im_end|>                      ChatML turn markers
    <|image_start|> <|image_pad|> <|image_end|>  one image span
    <|audio_start|> <|audio_pad|> <|audio_end|>  one audio span (one triple per registered modality)

User text is always encoded with special-token matching off (:func:`encode_text`), so typing
``<|image_pad|>`` or ``<|im_start|>`` yields plain text tokens, never a control token.

Prefix space: a byte-level BPE has two tokens for most words, ``white`` (at the start of a
text) and `` white`` (after a space). An answer right after ``<|im_start|>assistant\n`` would
use the first form while captions use the second, so a model trained from scratch must learn
every answer word twice. With ``prefix_space`` (SentencePiece's "dummy prefix"), every text
part that does not start with whitespace is encoded with one leading space, in the processor
and in the chat template alike, and generated text is stripped. It is on for mmgpt's own BPE
and off for pretrained tokenizers, whose models were trained without it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from mmgpt.errors import CheckpointError
from mmgpt.modalities import MODALITIES

log = logging.getLogger(__name__)

EOS = "<|endoftext|>"
PAD = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
MEDIA_TOKENS = {name: m.tokens for name, m in MODALITIES.items()}  # (start, pad, end) per modality
SPECIAL_TOKENS = [EOS, PAD, IM_START, IM_END] + [t for m in MEDIA_TOKENS.values() for t in m]

ESCAPE = "\u2060"  # WORD JOINER: breaks a special token typed in text (see chat_template's ``escape``)


def _text_part(var: str, prefix_space: bool, escape: Sequence[str] = ()) -> str:
    """Jinja that prints the text in ``var``, with one leading space if asked and it has none,
    and each string of ``escape`` broken by :data:`ESCAPE` after its first character."""
    value = var + "".join(f" | replace({json.dumps(t)}, {json.dumps(t[0] + ESCAPE + t[1:])})"
                          for t in sorted(escape, key=len, reverse=True))
    if not prefix_space:
        return "{{- " + value + " -}}"
    return "{{- (' ' if " + var + "[:1] not in ' \\t\\r\\n' else '') + (" + value + ") -}}"


def chat_template(prefix_space: bool = False, media_after_text: bool = False, escape: Sequence[str] = ()) -> str:
    """The ChatML template with media parts.

    Args:
        prefix_space: put one space before each text part that does not start with whitespace
            (see the module docstring).
        media_after_text: in user turns, render the text parts first and the media parts after
            them (``TokenizerConfig.media_after_text``), as the processor does.
        escape: special-token strings to break in text parts with :data:`ESCAPE` (exports:
            their tokenizer drops the mark after matching special tokens, so a token typed by a
            user is read as plain text, as mmgpt's processor reads it; see
            :func:`mmgpt.export.template.plain_text_tokenizer`).
    """
    text = "{%- if part['type'] == 'text' -%}" + _text_part("part['text']", prefix_space, escape) + "{%- endif -%}"
    media = "".join("{%- if part['type'] == '" + kind + "' -%}{{- '" + "".join(tokens) + "' -}}{%- endif -%}"
                    for kind, tokens in MEDIA_TOKENS.items())  # start + one pad + end per item
    parts = "{%- for part in message['content'] -%}" + text + media + "{%- endfor -%}"
    if media_after_text:
        text_first = ("{%- for part in message['content'] -%}" + text + "{%- endfor -%}"
                      "{%- for part in message['content'] -%}" + media + "{%- endfor -%}")
        parts = "{%- if message['role'] == 'user' -%}" + text_first + "{%- else -%}" + parts + "{%- endif -%}"
    return (
        "{%- for message in messages -%}"
        "{{- '<|im_start|>' + message['role'] + '\n' -}}"
        "{%- if message['content'] is string -%}" + _text_part("message['content']", prefix_space, escape) +
        "{%- else -%}" + parts + "{%- endif -%}"
        "{{- '<|im_end|>\n' -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
    )


CHAT_TEMPLATE = chat_template(False)


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=PAD, extra_special_tokens=SPECIAL_TOKENS[2:]
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _byte_level(tok: Tokenizer) -> Tokenizer:
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIAL_TOKENS])
    return tok


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """An untrained byte-level BPE: the special tokens, then the 256 byte symbols, no merges."""
    vocab = {s: i for i, s in enumerate(SPECIAL_TOKENS)}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    return _wrap(_byte_level(Tokenizer(models.BPE(vocab=vocab, merges=[]))))


def train_bpe(corpus: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``corpus`` (an iterable of strings) up to ``vocab_size`` tokens.

    The special tokens keep the first ids and all 256 bytes stay in the vocabulary, so any
    text still encodes.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size, len(SPECIAL_TOKENS) + 256),
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    return _wrap(_byte_level(tok))


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a transformers tokenizer (local directory or hub name) and give it mmgpt's tokens.

    Missing special tokens are added (the decoder's embeddings must then be resized, which
    :class:`mmgpt.model.MMGPT` does), a pad token is set if there is none, and the ChatML
    template with media parts is installed.

    Raises:
        CheckpointError: the tokenizer cannot be loaded.
    """
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot load tokenizer from {path}: {e}") from e
    missing = [t for t in SPECIAL_TOKENS if t not in tok.get_vocab()]
    if missing:
        tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True)
        log.info("added %d mmgpt special tokens to the tokenizer from %s", len(missing), path)
    if tok.pad_token is None:
        tok.pad_token = PAD
    tok.chat_template = CHAT_TEMPLATE
    return tok


def with_prefix_space(text: str) -> str:
    """``text`` with one leading space unless it is empty or starts with whitespace."""
    return " " + text if text and not text[0].isspace() else text


def encode_text(tokenizer, text: str, prefix_space: bool = False) -> list[int]:
    """Token ids of user-supplied text; special-token strings in it stay plain text.

    ``prefix_space`` encodes ``with_prefix_space(text)`` (see the module docstring).
    """
    if prefix_space:
        text = with_prefix_space(text)
    if not text:
        return []
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def special_ids(tokenizer) -> dict[str, int]:
    """Ids of mmgpt's special tokens by token string."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    bad = [t for t, i in ids.items() if i is None or i == tokenizer.unk_token_id]
    if bad:
        raise CheckpointError(f"tokenizer lacks mmgpt special tokens {bad}; load it with mmgpt.tokenizer.load_tokenizer")
    return ids
