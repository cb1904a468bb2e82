"""Exceptions raised by mmgpt for bad input.

Every error a user can cause (a malformed config, a broken image, a prompt that does not fit)
is one of these, with a message that names the file, key or value at fault. Catch
``MMGPTError`` to handle them all.
"""

from __future__ import annotations


class MMGPTError(Exception):
    """Base class of every error mmgpt raises on purpose."""


class ConfigError(MMGPTError, ValueError):
    """A configuration key is unknown, missing, or has a bad value."""


class DataError(MMGPTError, ValueError):
    """A dataset row or file is malformed; the message names the file and row."""


class InvalidMediaError(DataError):
    """An image or audio file cannot be decoded or fails validation (corrupt, empty, NaN, too big)."""


class ContextOverflowError(MMGPTError, ValueError):
    """A sequence cannot fit in the model's context, even after trimming text."""


class CheckpointError(MMGPTError, OSError):
    """A checkpoint directory is missing files, or a file in it is damaged or does not match."""


class ExportError(MMGPTError, ValueError):
    """A model cannot be written in the asked format (a part with no counterpart there)."""


class TrainingError(MMGPTError, RuntimeError):
    """A run cannot go on (too many steps with a non-finite loss or gradient); its last
    checkpoint is intact."""


__all__ = [
    "CheckpointError",
    "ConfigError",
    "ContextOverflowError",
    "DataError",
    "ExportError",
    "InvalidMediaError",
    "MMGPTError",
    "TrainingError",
]
