"""Audio front end: mmgpt's batched log-mel (torch FFT + torchaudio Slaney filters) vs librosa per clip.

Shapes: C clips of 1-10 s at 16 kHz (S samples at most), M = 80 mel bins, F frames of 10 ms.

Both compute Whisper's log-mel: 25 ms Hann window, 10 ms hop, centred with reflect padding,
power spectrum, Slaney mel filters, last frame dropped, log10, clamp at (max - 8) per clip,
(x + 4) / 4. mmgpt runs the whole batch in one call (``LogMel``, padded to the longest clip);
librosa runs clip by clip, as a data loader would. The largest difference between the two is
reported, so a fast but wrong front end cannot pass.
"""

from __future__ import annotations

import numpy as np
import torch

from mmgpt.bench.timing import Settings, SideFactory

SIZES = {False: {"clips": 64, "min_s": 1.0, "max_s": 10.0}, True: {"clips": 8, "min_s": 1.0, "max_s": 2.0}}
SAMPLE_RATE = 16_000


def clips(n: int, min_s: float, max_s: float, seed: int = 0) -> list[np.ndarray]:
    """``n`` float32 clips of uniform random length: a few tones and noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = np.arange(int(rng.uniform(min_s, max_s) * SAMPLE_RATE)) / SAMPLE_RATE
        wave = sum(0.2 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t) for _ in range(3))
        out.append((wave + 0.01 * rng.standard_normal(t.shape)).astype(np.float32))
    return out


def librosa_log_mel(clip: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """Whisper's log-mel of one clip with librosa: (M, F)."""
    import librosa

    mel = librosa.feature.melspectrogram(y=clip, sr=SAMPLE_RATE, n_fft=400, hop_length=160, n_mels=n_mels,
                                         power=2.0, center=True, pad_mode="reflect", htk=False, norm="slaney")
    log_spec = np.log10(np.maximum(mel[:, :-1], 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def sides(settings: Settings) -> dict[str, SideFactory]:
    """``torchaudio`` (batched) and ``librosa`` (per clip) factories over the same clips."""
    size = SIZES[settings.quick]
    data = clips(size["clips"], size["min_s"], size["max_s"], settings.seed)
    seconds = sum(len(c) for c in data) / SAMPLE_RATE
    info = {"clips": len(data), "audio_seconds": round(seconds, 2), "min_s": size["min_s"], "max_s": size["max_s"]}

    def torch_side():
        from mmgpt.encoders.audio import LogMel

        device = settings.torch_device
        front = LogMel(80).to(device)
        lengths = torch.tensor([len(c) for c in data])
        waves = torch.zeros(len(data), int(lengths.max()))  # (C, S)
        for i, c in enumerate(data):
            waves[i, : len(c)] = torch.from_numpy(c)
        waves = waves.to(device)

        @torch.no_grad()
        def step() -> dict[str, float]:
            front(waves, lengths)
            return {}

        with torch.no_grad():
            mel, frames = front(waves, lengths)
        ref = librosa_log_mel(data[0])
        diff = float(np.abs(mel[0, :, : int(frames[0])].cpu().numpy() - ref).max())
        return step, {**info, "max_abs_diff_vs_librosa": diff}

    def librosa_side():
        librosa_log_mel(data[0])  # import and cache librosa's filters outside the timing

        def step() -> dict[str, float]:
            for c in data:
                librosa_log_mel(c)
            return {}

        return step, dict(info)

    return {"torchaudio": torch_side, "librosa": librosa_side}
