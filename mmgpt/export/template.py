"""The tokenizer of an export: a chat template that keeps typed special tokens plain text.

mmgpt's processor encodes every text part with special-token matching off, so a user who types
``<|image_pad|>`` or ``<|im_start|>`` gets plain text tokens, never a control token. A saved
tokenizer's ``apply_chat_template`` renders a string and tokenizes it whole, where such text
would become control tokens. The exported tokenizer therefore

* renders text parts with each special token broken by an invisible mark after its first
  character (:data:`mmgpt.tokenizer.ESCAPE`, U+2060 WORD JOINER), so the broken string is no
  longer matched as a special token, and
* removes that mark in its normalizer, which runs after special tokens are matched and before
  the text is split into tokens, so the text encodes exactly as mmgpt encodes it.

The one visible difference: a U+2060 that a user types is dropped by the exported tokenizer
(mmgpt's own keeps it).
"""

from __future__ import annotations

import copy

from tokenizers import AddedToken, normalizers

from mmgpt.errors import ExportError
from mmgpt.tokenizer import ESCAPE, chat_template, encode_text


def special_strings(tokenizer) -> list[str]:
    """The special added tokens' strings: what ``split_special_tokens`` stops matching."""
    return sorted({t.content for t in tokenizer.added_tokens_decoder.values() if t.special and len(t.content) > 1})


def plain_text_tokenizer(tokenizer, prefix_space: bool, media_after_text: bool):
    """A copy of ``tokenizer`` for an export (see the module docstring).

    Raises:
        ExportError: the copy still reads a typed special token as a control token (checked
            here on every special token).
    """
    tok = copy.deepcopy(tokenizer)
    specials = special_strings(tok)
    backend = tok.backend_tokenizer
    normalized = [s for s in specials if tok.added_tokens_decoder[tok.convert_tokens_to_ids(s)].normalized]
    if normalized:  # matched after the normalizer would have dropped the mark: match on raw text
        backend.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in normalized])
    strip = normalizers.Replace(ESCAPE, "")
    backend.normalizer = strip if backend.normalizer is None else normalizers.Sequence([strip, backend.normalizer])
    tok.chat_template = chat_template(prefix_space, media_after_text, escape=specials)
    check(tok, specials, prefix_space)
    return tok


def check(tok, specials: list[str], prefix_space: bool) -> None:
    """Every special token typed in a user's text renders as mmgpt encodes that text.

    Raises:
        ExportError: naming the first token that does not.
    """
    for s in specials:
        text = f"a {s} b{s}"
        ids = tok.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": text}]}],
                                      tokenize=True, return_dict=False)
        ids = ids["input_ids"] if isinstance(ids, dict) else list(ids)
        want = encode_text(tok, text, prefix_space)
        if not _contains(ids, want):
            raise ExportError(f"tokenizer: typed {s!r} cannot be kept plain text in the exported chat template")


def _contains(ids: list[int], part: list[int]) -> bool:
    n = len(part)
    return any(ids[i:i + n] == part for i in range(len(ids) - n + 1))
