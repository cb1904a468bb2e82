"""mmgpt: a multimodal GPT toolkit — one decoder LM that reads text, images and audio.

Public surface::

    import mmgpt
    model = mmgpt.load("runs/quickstart/final")
    model.caption(image="shapes.png")
    model.chat([{"role": "user", "content": [{"type": "audio", "audio": "beeps.wav"},
                                             {"type": "text", "text": "How many beeps?"}]}])

Importing mmgpt registers ``model_type: "mmgpt"`` with transformers' Auto classes
(:mod:`mmgpt.hf`), so ``AutoModelForImageTextToText`` / ``AutoProcessor`` load a folder written
by ``mmgpt export --format hf``. The model, config and processor modules load on first use of
these names.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from mmgpt.errors import (
    CheckpointError,
    ConfigError,
    ContextOverflowError,
    DataError,
    InvalidMediaError,
    MMGPTError,
)
from mmgpt.hf import register as _register

__version__ = "0.1.0"
_register()

_LAZY = {
    "MMGPT": "mmgpt.model",
    "MMGPTConfig": "mmgpt.config",
    "load": "mmgpt.model",
    "Processor": "mmgpt.processor",
}

if TYPE_CHECKING:
    from mmgpt.config import MMGPTConfig
    from mmgpt.model import MMGPT, load
    from mmgpt.processor import Processor


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmgpt' has no attribute {name!r}")


__all__ = [
    "MMGPT",
    "CheckpointError",
    "ConfigError",
    "ContextOverflowError",
    "DataError",
    "InvalidMediaError",
    "MMGPTConfig",
    "MMGPTError",
    "Processor",
    "__version__",
    "load",
]
