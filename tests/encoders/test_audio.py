"""Audio encoder: Whisper-compatible log-mel, Whisper weights, cost follows length, chunking."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

from mmgpt.config import AudioConfig
from mmgpt.encoders.audio import AudioEncoder, LogMel, encoder_frames
from mmgpt.errors import CheckpointError, InvalidMediaError

CFG = AudioConfig(d_model=32, layers=2, heads=2, ffn_dim=64, max_source_positions=50)  # 1 s window


def wave(seconds: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * 16000)
    t = torch.arange(n) / 16000
    return 0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.05 * torch.randn(n, generator=g)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return AudioEncoder(CFG).eval()


def test_log_mel_matches_whisper_feature_extractor():
    x = wave(1.3, seed=3)
    mel, n = LogMel(80)(x[None])
    ref = WhisperFeatureExtractor(feature_size=80)(x.numpy(), sampling_rate=16000, padding="do_not_pad",
                                                   return_tensors="pt").input_features
    assert n.item() == ref.shape[-1] == len(x) // 160
    torch.testing.assert_close(mel, ref, atol=2e-5, rtol=1e-4)


def test_log_mel_batched_equals_single():
    a, b = wave(1.0, 1), wave(0.37, 2)
    batch = torch.zeros(2, len(a))
    batch[0], batch[1, : len(b)] = a, b
    mel, n = LogMel(80)(batch, torch.tensor([len(a), len(b)]))
    single, _ = LogMel(80)(b[None])
    torch.testing.assert_close(mel[1, :, : n[1]], single[0])
    assert (mel[1, :, n[1]:] == 0).all()


def test_log_mel_is_fp32_under_bf16_autocast():
    """The trainer encodes under bf16 autocast; the front end must not follow it."""
    x = torch.stack([wave(1.0, 4), wave(1.0, 5)])
    ref, _ = LogMel(80)(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = LogMel(80)(x)
    assert got.dtype == torch.float32
    assert torch.equal(got, ref)


def test_feature_length_proportional_to_duration(encoder):
    with torch.no_grad():
        short, ls = encoder(wave(0.5)[None])
        long, ll = encoder(wave(3.0)[None])
    assert ls.item() == 25 and ll.item() == 150  # 20 ms per frame: no padding to a 30 s window
    assert short.shape[1] == 25 and long.shape[1] == 150
    assert ll.item() == 6 * ls.item()
    assert encoder.num_tokens(48000) == encoder_frames(48000, encoder.window) == 150


def test_long_clip_is_chunked_not_truncated(encoder):
    x = wave(2.5, seed=4)  # window is 1 s: chunks of 1 s, 1 s, 0.5 s
    with torch.no_grad():
        feats, n = encoder(x[None])
        mel, _ = encoder.frontend(x[None])  # (1, 80, 250): the whole clip's log-mel, split in windows of 100
        parts = [encoder.encode_mel(mel[:, :, s : s + 100], torch.tensor([min(100, 250 - s)]))[0]
                 for s in (0, 100, 200)]
    assert n.item() == 50 + 50 + 25
    torch.testing.assert_close(feats[0], torch.cat(parts), atol=1e-5, rtol=1e-4)


def test_batched_equals_single(encoder):
    a, b = wave(1.7, 5), wave(0.6, 6)
    batch = torch.zeros(2, len(a))
    batch[0], batch[1, : len(b)] = a, b
    with torch.no_grad():
        feats, n = encoder(batch, torch.tensor([len(a), len(b)]))
        fa, _ = encoder(a[None])
        fb, _ = encoder(b[None])
    assert n.tolist() == [fa.shape[1], fb.shape[1]]
    torch.testing.assert_close(feats[0, : n[0]], fa[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(feats[1, : n[1]], fb[0], atol=1e-5, rtol=1e-4)


def test_too_short_clip_raises(encoder):
    with pytest.raises(InvalidMediaError, match="shorter than one 10 ms frame"):
        encoder(torch.zeros(1, 100))


def test_whisper_checkpoint_loads_and_matches_transformers(tmp_path):
    torch.manual_seed(0)
    wcfg = WhisperConfig(num_mel_bins=80, d_model=32, encoder_layers=2, encoder_attention_heads=2,
                         encoder_ffn_dim=64, decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64,
                         max_source_positions=50, vocab_size=100, pad_token_id=0, bos_token_id=1,
                         eos_token_id=2, decoder_start_token_id=1, begin_suppress_tokens=None,
                         suppress_tokens=None)
    ref = WhisperForConditionalGeneration(wcfg).eval()
    ref.save_pretrained(tmp_path / "whisper")
    enc = AudioEncoder(AudioConfig(pretrained_path=str(tmp_path / "whisper"))).eval()
    assert enc.window == 100 and enc.output_dim == 32
    mel, n = enc.frontend(wave(1.0)[None])  # exactly one full window: transformers' forward accepts it
    with torch.no_grad():
        expected = ref.model.encoder(mel).last_hidden_state
        got = enc.encode_mel(mel, n)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_damaged_whisper_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match=r"config\.json not found"):
        AudioEncoder(AudioConfig(pretrained_path=str(tmp_path)))
    WhisperConfig(d_model=32, encoder_layers=1, encoder_attention_heads=2, decoder_layers=1,
                  decoder_attention_heads=2).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="cannot read weights"):
        AudioEncoder(AudioConfig(pretrained_path=str(tmp_path)))


def test_bf16_autocast_runs(encoder):
    x = torch.tensor(np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1)[None]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        feats, _ = encoder(x)
    ref, _ = encoder(x)
    assert torch.isfinite(feats).all()
    assert (feats.float() - ref).abs().mean() < 0.05
