"""Shared fixtures: the tiny model preset and small media made on the fly."""

from __future__ import annotations

import socket
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "mmgpt" / "presets" / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny_config():
    from mmgpt.config import MMGPTConfig

    return MMGPTConfig.from_yaml(TINY)


@pytest.fixture(scope="session")
def tiny_model(tiny_config):
    """A random-init tiny model in eval mode (do not train it in place: session-scoped)."""
    from mmgpt.model import MMGPT

    torch.manual_seed(0)
    return MMGPT(tiny_config).eval()


def make_image(seed: int = 0, size: int = 40) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def make_wave(seconds: float, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


def random_head(model):
    """``model`` (an MMGPT) with an untied output layer of large random weights, in eval mode:
    greedy answers vary token by token, so comparisons of two generation paths are not vacuous.
    Draws from torch's global generator: seed it first."""
    head = torch.nn.Linear(model.decoder.config.hidden_size, model.decoder.config.vocab_size, bias=False)
    torch.nn.init.normal_(head.weight, std=2.0)
    model.decoder.config.tie_word_embeddings = False
    model.decoder.set_output_embeddings(head)
    return model.eval()


def readable_model(seed: int = 0):
    """A random tiny model whose greedy answers are lowercase letters (never empty, never a stop token).

    Its output layer, untied from the input embeddings, keeps only the letters' rows: inputs
    are read as before, so different inputs still get different answers.
    """
    from mmgpt.model import MMGPT
    from mmgpt.tokenizer import encode_text

    torch.manual_seed(seed)
    model = MMGPT.from_config("tiny").eval()
    letters = [encode_text(model.tokenizer, c)[0] for c in string.ascii_lowercase]
    embed = model.decoder.get_input_embeddings().weight  # (V, H)
    head = torch.nn.Linear(embed.shape[1], embed.shape[0], bias=False)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[letters] = embed[letters]
    model.decoder.config.tie_word_embeddings = False
    model.decoder.set_output_embeddings(head)
    return model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expected(model, *, image=None, audio=None, text: str, history=(), tokens: int = 8) -> str:
    """What ``model.chat`` answers (greedy) to one user turn of optional media and text."""
    content = [{"type": k, k: v} for k, v in (("image", image), ("audio", audio)) if v is not None]
    content.append({"type": "text", "text": text})
    return model.chat([*history, {"role": "user", "content": content}], max_new_tokens=tokens).strip()
