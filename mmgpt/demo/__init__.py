"""The gradio demo (``mmgpt demo``) and what it shares with the terminal chat.

``build_app`` and ``launch`` import gradio when first used, so ``import mmgpt.demo`` (and the
terminal chat, which uses :mod:`mmgpt.demo.session`) work without the ``demo`` extra.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_app", "launch"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mmgpt.demo import app

        return getattr(app, name)
    raise AttributeError(f"module 'mmgpt.demo' has no attribute {name!r}")
