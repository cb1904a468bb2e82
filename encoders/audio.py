"""Audio encoder: Whisper-compatible log-mel front end and a Whisper-style transformer encoder.

Shapes: B clips, S samples (16 kHz), M mel bins (80 or 128), F mel frames (10 ms each),
W window in frames (``2 * max_source_positions``), T encoder frames (20 ms each), D width.

    waveforms (B, S) + lengths (B,) -> LogMel -> mel (B, M, F)
    -> split into windows of <= W frames (C chunks in all) -> WhisperEncoder layers -> (C, ceil(W/2), D)
    -> chunks of each clip concatenated in order -> features (B, T, D) + lengths (B,)

Clips are never padded to the 30 s window: a batch is padded only to its longest clip and
padded positions are masked, so cost follows clip length and a clip gives the same features
alone or in a batch. A clip longer than the window is split, never truncated.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio
from safetensors import safe_open
from torch import nn
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from mmgpt.encoders.base import MediaEncoder
from mmgpt.errors import CheckpointError, InvalidMediaError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms


def encoder_frames(num_samples: int, window: int) -> int:
    """Encoder frames (T) for a clip of ``num_samples`` samples with a window of ``window`` mel frames."""
    full, rest = divmod(num_samples // HOP, window)
    return full * math.ceil(window / 2) + math.ceil(rest / 2)


class LogMel(nn.Module):
    """Whisper's log-mel spectrogram, batched over clips of different lengths.

    Matches ``whisper.log_mel_spectrogram`` per clip: STFT with a 25 ms Hann window and 10 ms
    hop (centred, reflect padding), last frame dropped, Slaney mel filters, log10, clamp to
    (max - 8) with the max taken over that clip only, then (x + 4) / 4. Each clip is reflect-
    padded on its own before batching, so batched and single results agree.
    """

    BLOCK = 1024  # frames per block of the transform

    def __init__(self, n_mels: int = 80) -> None:
        super().__init__()
        with torch.device("cpu"):  # computed values even when the model is built on the meta device
            fb = torchaudio.functional.melscale_fbanks(
                n_freqs=N_FFT // 2 + 1, f_min=0.0, f_max=SAMPLE_RATE / 2, n_mels=n_mels,
                sample_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney",
            )  # (N_FFT/2+1, M)
            window = torch.hann_window(N_FFT)
        self.register_buffer("filters", fb.T.contiguous(), persistent=False)  # (M, N_FFT/2+1)
        # The same filters for interleaved (re, im) spectra: sum_k (re_k^2 + im_k^2) f_k.
        self.register_buffer("filters_ri", fb.repeat_interleave(2, dim=0).contiguous(), persistent=False)  # (2K, M)
        self.register_buffer("window", window, persistent=False)
        self.n_mels = n_mels

    @staticmethod
    def num_frames(num_samples: int) -> int:
        return num_samples // HOP

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) float waveforms + (B,) sample lengths -> (B, M, F) log-mel + (B,) frame lengths.

        Raises:
            InvalidMediaError: a clip is shorter than one 10 ms frame.
        """
        # Always fp32: under a bf16 autocast the mel matmul would lose the low bins' precision.
        with torch.autocast(waveforms.device.type, enabled=False):
            return self._forward(waveforms.float(), lengths)

    def _forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        B, S = waveforms.shape
        if lengths is None:
            lengths = torch.full((B,), S, dtype=torch.long)
        lengths = lengths.to("cpu", torch.long)
        if int(lengths.min()) < HOP:
            raise InvalidMediaError(f"audio clip of {int(lengths.min())} samples is shorter than one 10 ms frame")
        pad = N_FFT // 2
        frame_lengths = lengths // HOP
        # Every clip centred on its own (reflect padding) and padded to whole hops, back to back
        # in one signal: its frames are then rows offset, offset+1, ... of one strided view, and
        # no padding frames of shorter clips are transformed.
        segments, offsets, at = [], [], 0
        for i, n in enumerate(lengths.tolist()):
            clip = waveforms[i, :n].float()[None, None]  # (1, 1, n)
            centred = F.pad(clip, (pad, pad), mode="reflect" if n > pad else "constant")[0, 0]
            segments.append(F.pad(centred, (0, -centred.numel() % HOP)))
            offsets.append(at)
            at += segments[-1].numel() // HOP
        frames = torch.cat(segments).unfold(0, N_FFT, HOP)  # (R, N_FFT) view
        # Blocks of rows small enough to stay in cache through window, FFT, power and mel.
        mel = frames.new_empty(frames.shape[0], self.n_mels)  # (R, M)
        for r in range(0, frames.shape[0], self.BLOCK):
            block = frames[r: r + self.BLOCK] * self.window
            spec = torch.view_as_real(torch.fft.rfft(block, dim=-1)).reshape(block.shape[0], -1)  # (b, 2K): re, im
            out = mel[r: r + self.BLOCK]
            torch.mm(spec.square_(), self.filters_ri, out=out)  # |X|^2 @ filters
            out.clamp_(min=1e-10).log10_().add_(4.0).div_(4.0)  # (log10 + 4) / 4, while in cache
        n_frames = int(frame_lengths.max())
        steps = torch.arange(n_frames)
        valid = steps[None, :] < frame_lengths[:, None]  # (B, F); the clip's last frame is dropped, as Whisper does
        rows = (torch.tensor(offsets)[:, None] + steps[None, :]).clamp_(max=frames.shape[0] - 1)
        valid, rows = valid.to(mel.device), rows.to(mel.device)
        log_spec = mel[rows].masked_fill_(~valid[..., None], float("-inf"))  # (B, F, M)
        peak = log_spec.amax(dim=(1, 2), keepdim=True)  # (B, 1, 1): each clip's own max
        # clamp at max - 8 before scaling == clamp at scaled max - 2 after it
        log_spec = torch.maximum(log_spec, peak - 2.0, out=log_spec).transpose(1, 2)  # (B, M, F)
        return log_spec.masked_fill_(~valid[:, None, :], 0.0), frame_lengths


def build_whisper_config(cfg) -> WhisperConfig:
    """The WhisperConfig for an :class:`mmgpt.config.AudioConfig` (its ``hf_config`` wins when set)."""
    if cfg.hf_config:
        wcfg = WhisperConfig(**cfg.hf_config)
    else:
        wcfg = WhisperConfig(
            num_mel_bins=cfg.n_mels, d_model=cfg.d_model, encoder_layers=cfg.layers,
            encoder_attention_heads=cfg.heads, encoder_ffn_dim=cfg.ffn_dim,
            max_source_positions=cfg.max_source_positions, decoder_layers=1, decoder_attention_heads=cfg.heads,
            decoder_ffn_dim=cfg.ffn_dim, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        )
    wcfg._attn_implementation = "sdpa"
    return wcfg


def load_whisper_encoder_weights(path: str | Path) -> tuple[WhisperConfig, dict[str, torch.Tensor]]:
    """Read a local Whisper checkpoint directory (``config.json`` + safetensors, sharded or not).

    Accepts ``WhisperForConditionalGeneration`` (``model.encoder.*``), ``WhisperModel``
    (``encoder.*``) and bare ``WhisperEncoder`` checkpoints; only encoder weights are kept.

    Raises:
        CheckpointError: missing directory/config/weights, or no encoder weights inside.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"Whisper checkpoint {path}: config.json not found")
    wcfg = WhisperConfig.from_pretrained(path)
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"Whisper checkpoint {path}: no .safetensors weights (pickled .bin files are not loaded)")
    state = {}
    try:
        for f in files:
            with safe_open(f, framework="pt") as fh:
                for key in fh.keys():  # noqa: SIM118 - safe_open has no __iter__
                    if "encoder." in key:
                        state[key.split("encoder.", 1)[1]] = fh.get_tensor(key)
                    elif key.split(".")[0] in ("conv1", "conv2", "embed_positions", "layers", "layer_norm"):
                        state[key] = fh.get_tensor(key)
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"Whisper checkpoint {path}: cannot read weights: {e}") from e
    if not state:
        raise CheckpointError(f"Whisper checkpoint {path}: no encoder weights found")
    return wcfg, state


class AudioEncoder(MediaEncoder):
    """Log-mel front end + Whisper encoder layers (transformers' ``WhisperEncoder`` modules): the
    ``audio`` modality.

    The encoder is transformers' own ``WhisperEncoder``, so real Whisper weights load into it
    unchanged; this wrapper runs its parts on windows of any length up to the window with a
    padding mask, instead of its forward, which insists on exactly 30 s of input.

    Args:
        cfg: a :class:`mmgpt.config.AudioConfig`.
        load_weights: load ``cfg.pretrained_path`` when set.

    Raises:
        CheckpointError: the Whisper checkpoint is missing, damaged or does not fit.
    """

    modality = "audio"
    token_layout = "sequence"
    sample_rate = SAMPLE_RATE

    def __init__(self, cfg, load_weights: bool = True) -> None:
        super().__init__()
        state = None
        if cfg.pretrained_path and load_weights:
            wcfg, state = load_whisper_encoder_weights(cfg.pretrained_path)
            wcfg._attn_implementation = "sdpa"
        else:
            wcfg = build_whisper_config(cfg)
        self.whisper = WhisperEncoder(wcfg)
        if state is not None:
            missing, unexpected = self.whisper.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise CheckpointError(
                    f"Whisper checkpoint {cfg.pretrained_path}: missing {missing[:5]}, unexpected {unexpected[:5]}"
                )
            log.info("loaded Whisper encoder weights from %s", cfg.pretrained_path)
        self.whisper_config = wcfg
        self.frontend = LogMel(wcfg.num_mel_bins)
        self.window = 2 * wcfg.max_source_positions  # mel frames per encoder window

    @property
    def output_dim(self) -> int:
        return self.whisper_config.d_model

    def chunk_lengths(self, num_frames: int) -> list[int]:
        """Mel-frame lengths of the windows a clip of ``num_frames`` frames is split into."""
        full, rest = divmod(num_frames, self.window)
        return [self.window] * full + ([rest] if rest else [])

    def num_tokens(self, length: int) -> int:
        """Encoder frames (T) for a clip of ``length`` samples, all windows together."""
        return encoder_frames(length, self.window)

    def prepare(self, decoded) -> torch.Tensor:
        """A float32 mono waveform at :attr:`sample_rate` (numpy) -> (S,) tensor."""
        return torch.from_numpy(decoded)

    def load_options(self) -> dict:
        return {"sample_rate": self.sample_rate}

    def make_portable(self, settings) -> None:
        """Also inline the full Whisper config the pretrained directory held."""
        super().make_portable(settings)
        settings.hf_config = self.export_config()

    def dummy_input(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """One second of silence."""
        return torch.zeros(1, self.sample_rate, device=device), torch.tensor([self.sample_rate], device=device)

    def encode_mel(self, mel: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        """Run the encoder on windows: (C, M, F<=W) + (C,) lengths -> (C, ceil(F/2), D)."""
        w = self.whisper
        F_ = mel.shape[-1]
        valid = torch.arange(F_, device=mel.device)[None, :] < frame_lengths.to(mel.device)[:, None]  # (C, F)
        x = F.gelu(w.conv1(mel.to(w.conv1.weight.dtype)))  # (C, D, F)
        # Zero past each window's end, so conv2 sees what the single-clip conv padding would.
        x = x * valid[:, None, :].to(x.dtype)
        x = F.gelu(w.conv2(x))  # (C, D, T) with T = ceil(F/2)
        x = x.transpose(1, 2)  # (C, T, D)
        T = x.shape[1]
        x = x + w.embed_positions.weight[:T].to(x.dtype)
        out_len = (frame_lengths.to(mel.device) + 1) // 2  # (C,)
        key_ok = torch.arange(T, device=x.device)[None, :] < out_len[:, None]  # (C, T)
        mask = None if bool(key_ok.all()) else key_ok[:, None, None, :].expand(-1, 1, T, T)  # (C, 1, T, T) bool
        for layer in w.layers:
            x = layer(x, mask)
        return w.layer_norm(x)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) waveforms + (B,) sample lengths -> features (B, T, D) + (B,) feature lengths."""
        B = waveforms.shape[0]
        mel, frame_lengths = self.frontend(waveforms, lengths)  # (B, M, F), (B,)
        chunks, owners, clen = [], [], []
        for i, n in enumerate(frame_lengths.tolist()):
            start = 0
            for c in self.chunk_lengths(n):
                chunks.append(mel[i, :, start : start + c])  # (M, c)
                owners.append(i)
                clen.append(c)
                start += c
        longest = max(clen)
        batch = mel.new_zeros(len(chunks), mel.shape[1], longest)  # (C, M, Fc)
        for j, ch in enumerate(chunks):
            batch[j, :, : ch.shape[1]] = ch
        feats = self.encode_mel(batch, torch.tensor(clen))  # (C, Tc, D)
        per_clip: list[list[torch.Tensor]] = [[] for _ in range(B)]
        for j, (i, c) in enumerate(zip(owners, clen)):
            per_clip[i].append(feats[j, : (c + 1) // 2])
        joined = [torch.cat(p, dim=0) for p in per_clip]  # each (T_i, D)
        out_lengths = torch.tensor([t.shape[0] for t in joined])
        out = feats.new_zeros(B, int(out_lengths.max()), feats.shape[-1])  # (B, T, D)
        for i, t in enumerate(joined):
            out[i, : t.shape[0]] = t
        return out, out_lengths

    def export_config(self) -> dict:
        """The full WhisperConfig as a dict, stored in the checkpoint so it reloads alone."""
        d = json.loads(self.whisper_config.to_json_string(use_diff=False))
        for k in ("_attn_implementation", "transformers_version", "architectures", "torch_dtype", "dtype"):
            d.pop(k, None)
        return d
