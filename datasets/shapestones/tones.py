"""Synthesise a ShapesTones clip: 1–4 identical beeps at 16 kHz.

One beep is computed once per (pitch, waveform, duration) and cached; a clip is silence, the
beep repeated with 0.15 s gaps, and silence, scaled to the loudness peak, plus faint noise.
Square and sawtooth waves are built additively from their harmonics below 7.2 kHz, so nothing
aliases at 16 kHz: a square has odd harmonics only (amplitude 1/k), a sawtooth all of them
(amplitude 1/k), a sine none. Each beep fades in and out over 5 ms to avoid clicks.

Layout: leading silence 0.05–0.2 s, beeps, trailing silence 0.05–0.3 s, padded to at least
0.5 s; the longest clip (4 long beeps) is about 2.35 s, under the 3 s limit.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from mmgpt.errors import ConfigError

from .world import DURATIONS, LOUDNESS, PITCHES, WAVEFORMS

SAMPLE_RATE = 16_000
GAP_SECONDS = 0.15
LEAD_SECONDS = (0.05, 0.2)
TAIL_SECONDS = (0.05, 0.3)
MIN_SECONDS = 0.5
MAX_SECONDS = 3.0
FADE_SECONDS = 0.005
NOISE_SIGMA = 0.003
BAND_LIMIT_HZ = 7_200.0


@cache
def beep(pitch: str, waveform: str, duration: str) -> np.ndarray:
    """One beep with peak amplitude 1, faded in and out (cached; the array is read-only).

    Args:
        pitch: a key of :data:`PITCHES`.
        waveform: one of :data:`WAVEFORMS`.
        duration: a key of :data:`DURATIONS`.

    Returns:
        float32 array of ``round(DURATIONS[duration] * SAMPLE_RATE)`` samples.

    Raises:
        ConfigError: an attribute is unknown.
    """
    if pitch not in PITCHES or waveform not in WAVEFORMS or duration not in DURATIONS:
        raise ConfigError(f"unknown tone attributes {(pitch, waveform, duration)}")
    freq = PITCHES[pitch]
    n = round(DURATIONS[duration] * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE  # (n,)
    if waveform == "sine":
        wave = np.sin(2 * np.pi * freq * t)
    else:
        k = np.arange(1, int(BAND_LIMIT_HZ // freq) + 1)  # (K,) harmonic numbers
        if waveform == "square":
            amps = np.where(k % 2 == 1, 1.0 / k, 0.0)
        else:
            amps = (-1.0) ** (k + 1) / k
        wave = amps @ np.sin(2 * np.pi * freq * k[:, None] * t[None, :])  # (K,) @ (K, n) -> (n,)
    wave = wave / np.max(np.abs(wave))
    fade = round(FADE_SECONDS * SAMPLE_RATE)
    ramp = np.linspace(0.0, 1.0, fade, endpoint=False)
    wave[:fade] *= ramp
    wave[n - fade :] *= ramp[::-1]
    out = wave.astype(np.float32)
    out.flags.writeable = False
    return out


def render_audio(truth: dict, rng: np.random.Generator, noise: bool = True) -> np.ndarray:
    """Synthesise the clip described by an audio ground truth.

    Args:
        truth: ``{"pitch", "waveform", "beeps", "duration", "loudness"}``.
        rng: draws the leading/trailing silence and the noise.
        noise: add white noise with σ = 0.003.

    Returns:
        float32 mono waveform at :data:`SAMPLE_RATE`, 0.5–3 s long, within [-1, 1].

    Raises:
        ConfigError: an attribute is unknown or the beep count is not a positive int.
    """
    if truth.get("loudness") not in LOUDNESS:
        raise ConfigError(f"unknown loudness {truth.get('loudness')!r}")
    beeps = truth.get("beeps")
    if not isinstance(beeps, int) or beeps < 1:
        raise ConfigError(f"beeps must be a positive int, got {beeps!r}")
    one = beep(truth["pitch"], truth["waveform"], truth["duration"])
    gap = round(GAP_SECONDS * SAMPLE_RATE)
    lead = round(rng.uniform(*LEAD_SECONDS) * SAMPLE_RATE)
    tail = round(rng.uniform(*TAIL_SECONDS) * SAMPLE_RATE)
    body = beeps * len(one) + (beeps - 1) * gap
    total = max(round(MIN_SECONDS * SAMPLE_RATE), lead + body + tail)
    if total > MAX_SECONDS * SAMPLE_RATE:
        raise ConfigError(f"{beeps} beeps do not fit in {MAX_SECONDS} s")
    clip = np.zeros(total, dtype=np.float32)
    starts = lead + np.arange(beeps) * (len(one) + gap)  # (beeps,)
    idx = starts[:, None] + np.arange(len(one))[None, :]  # (beeps, n)
    clip[idx.ravel()] = np.tile(one, beeps) * np.float32(LOUDNESS[truth["loudness"]])
    if noise:
        clip += rng.normal(0.0, NOISE_SIGMA, size=total).astype(np.float32)
    return np.clip(clip, -1.0, 1.0)
