"""Encoders for mmgpt (installed as ``mmgpt.encoders``): a timm vision transformer and a
Whisper-style audio encoder with a log-mel front end, behind one small interface."""
