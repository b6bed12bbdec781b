"""Audio encoder: aiSFX sound-effect embeddings (PyPI ``aisfx``, CC BY 4.0 weights).

aiSFX (Ma et al., ISMIR 2022, model "X-Sequential-CE") embeds 2-second blocks of a log-mel
spectrogram with a 4-block CNN (EmbeddingNet). The package computes its spectrogram with
essentia (or librosa), neither of which we depend on, so this module ports the *essentia*
pipeline -- the one the paper and the package's default ``inference.main`` use and that the
'original' normalisation constants were measured on -- to numpy/torch:

  EasyLoader(sampleRate=44100)   mono mix, resampled, gain db2amp(replayGain + 6) = 1
  FrameCutter(2048, hop 1024)    first frame centred on sample 0 (zero-padded), last frame
                                 the first whose centre reaches the end of the signal
  Windowing('hann')              symmetric Hann, 0.5 - 0.5 cos(2 pi n / (N - 1)), unnormalised
  Spectrum                       |rfft| -> 1025 bins
  MelBands(96, 0-22050 Hz, htkMel, weighting='warping', normalize='unit_sum', type='power')
  shift_scale_log                log10(1e4 * x + 1)
  spectrogram_normalize          (x - 0) / 9.457798957824707  ('original')
  blocking                       100 frames, hop 50 (emb_hop_size 0.5), partial last block dropped

Differences, all negligible for embeddings: resampling is scipy's polyphase filter instead of
libsamplerate; essentia adds -100 dB noise to all-zero frames (log10(1 + 1e4 * ~1e-8) ~ 1e-4).
The package returns one 512-d vector per block; a clip's embedding here is their mean,
L2-normalised. Unlike the package (``compute_hopSize`` asserts), clips shorter than one block
are zero-padded to a single block rather than failing.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from cart_pipeline.core.media import MAX_AUDIO_SECONDS, load_audio_mono

SAMPLE_RATE = 44100
FRAME_SIZE, HOP_SIZE = 2048, 1024
N_MELS = 96
F_MIN, F_MAX = 0.0, 22050.0
SPEC_MIN, SPEC_MAX = 0.0, 9.457798957824707  # aisfx spectrogram_normalize(spec_norm='original')
BLOCK_FRAMES, BLOCK_HOP = 100, 50  # aisfx EMB_BLOCK_LENGTH, round(100 * emb_hop_size=0.5)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)  # essentia hz2mel10 ('htkMel')


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def essentia_mel_filterbank(
    n_bins: int = FRAME_SIZE // 2 + 1,
    sample_rate: float = SAMPLE_RATE,
    n_mels: int = N_MELS,
    f_min: float = F_MIN,
    f_max: float = F_MAX,
) -> np.ndarray:
    """(n_mels, n_bins) weights of essentia MelBands(htkMel, weighting='warping', unit_sum).

    Port of essentia's MelBands::calculateFilterFrequencies + TriangularBands::createFilters:
    triangles linear in mel (not Hz), each summing to 1, a bin counted only inside
    [round(lower / df), round(upper / df)) as essentia loops over it.
    """
    mel_lo, mel_hi = _hz_to_mel(np.float64(f_min)), _hz_to_mel(np.float64(f_max))
    edges = _mel_to_hz(mel_lo + (mel_hi - mel_lo) / (n_mels + 1) * np.arange(n_mels + 2))
    df = (sample_rate / 2.0) / (n_bins - 1)
    bins = np.arange(n_bins)
    bin_hz = bins * df  # (n_bins,)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (n_mels, 1)
    bin_mel = _hz_to_mel(bin_hz)[None, :]  # (1, n_bins)
    rising = (bin_mel - _hz_to_mel(lower)) / (_hz_to_mel(centre) - _hz_to_mel(lower))
    falling = (_hz_to_mel(upper) - bin_mel) / (_hz_to_mel(upper) - _hz_to_mel(centre))
    weights = np.where(
        (bin_hz >= lower) & (bin_hz < centre),
        rising,
        np.where((bin_hz >= centre) & (bin_hz < upper), falling, 0.0),
    )  # (n_mels, n_bins)
    j_begin = (lower / df + 0.5).astype(int)
    j_end = (upper / df + 0.5).astype(int)
    weights *= (bins >= j_begin) & (bins < j_end)
    sums = weights.sum(axis=1, keepdims=True)
    return np.where(sums > 0, weights / np.where(sums > 0, sums, 1.0), 0.0)


def _aisfx_dir() -> Path:
    spec = importlib.util.find_spec("aisfx")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("package 'aisfx' is not installed (pip install --no-deps aisfx)")
    return Path(next(iter(spec.submodule_search_locations)))


def _aisfx_model_classes():
    """(EmbeddingNet, CrossNet) from aisfx/models/cnn2d.py.

    ``aisfx/__init__`` imports its inference helpers; should one of them ever need a
    dependency we do not install (librosa, essentia), load the model file on its own.
    """
    try:
        from aisfx.models.cnn2d import CrossNet, EmbeddingNet
    except ImportError:
        path = _aisfx_dir() / "models" / "cnn2d.py"
        spec = importlib.util.spec_from_file_location("_aisfx_cnn2d", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        EmbeddingNet, CrossNet = module.EmbeddingNet, module.CrossNet
    return EmbeddingNet, CrossNet


def load_aisfx_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, ds_dict) from aisfx's ``checkpoint.pth`` with ``weights_only=True``.

    ds_dict maps training-dataset name -> (index as a numpy int64 scalar, n_classes); those
    numpy scalars are the only non-tensor objects, pickled under numpy 1's module path.
    """
    allowed = [
        (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
        np.dtype,
        np.dtypes.Int64DType,
    ]
    with torch.serialization.safe_globals(allowed):
        weights, ds_dict = torch.load(path, map_location="cpu", weights_only=True)
    return weights, ds_dict


@cache
def _filterbank_tensor() -> torch.Tensor:
    return torch.from_numpy(essentia_mel_filterbank()).float()  # (96, 1025)


@cache
def _hann_tensor() -> torch.Tensor:
    return torch.hann_window(FRAME_SIZE, periodic=False, dtype=torch.float32)  # symmetric


def log_mel_spectrogram(wave: torch.Tensor) -> torch.Tensor:
    """(n,) mono 44.1 kHz waveform -> (T, 96) essentia-style log-mel, T = ceil(n / 1024) + 1."""
    n = wave.shape[0]
    n_frames = -(-n // HOP_SIZE) + 1
    left = (FRAME_SIZE + 1) // 2  # essentia's first frame starts at -(frameSize + 1) / 2
    right = (n_frames - 1) * HOP_SIZE + FRAME_SIZE - left - n
    frames = F.pad(wave.float(), (left, right)).unfold(0, FRAME_SIZE, HOP_SIZE)  # (T, 2048)
    power = torch.fft.rfft(frames * _hann_tensor()).abs().square()  # (T, 1025)
    mel = power @ _filterbank_tensor().T  # (T, 96)
    return torch.log10(1e4 * mel + 1.0)


def spectrogram_blocks(spec: torch.Tensor) -> torch.Tensor:
    """(T, 96) log-mel -> (n_blocks, 100, 96) normalised 2-second blocks (aisfx ``blocking``)."""
    spec = (spec - SPEC_MIN) / (SPEC_MAX - SPEC_MIN)
    n_blocks = max(1, (spec.shape[0] - BLOCK_FRAMES) // BLOCK_HOP + 1)  # partial block dropped
    needed = (n_blocks - 1) * BLOCK_HOP + BLOCK_FRAMES
    spec = F.pad(spec, (0, 0, 0, max(0, needed - spec.shape[0])))[:needed]  # zero = silence
    return spec.unfold(0, BLOCK_FRAMES, BLOCK_HOP).transpose(1, 2).contiguous()  # (nb, 100, 96)


def fold_batchnorms(net: nn.Module) -> nn.Module:
    """Fold the eval-mode BatchNorms of aiSFX's ConvBlocks into their convs (in place).

    Frozen statistics make conv+BN one affine conv; with channels_last this cuts CPU time
    per block by about a third (embeddings agree to ~2e-5 on values up to ~30).
    """
    for block in (net.conv_block1, net.conv_block2, net.conv_block3, net.conv_block4):
        for conv_name, bn_name in (("conv1", "bn1"), ("conv2", "bn2")):
            conv, bn = getattr(block, conv_name), getattr(block, bn_name)
            conv.weight, conv.bias = fuse_conv_bn_weights(
                conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
            )
            setattr(block, bn_name, nn.Identity())
    return net


class AiSfxAudioEncoder:
    """Frozen aiSFX EmbeddingNet: audio files -> (N, 512) L2-normalised clip embeddings."""

    name = "aisfx"
    modality = "audio"
    dim = 512
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        checkpoint_path: str | Path | None = None,
        device: str = "cpu",
        max_seconds: float | None = MAX_AUDIO_SECONDS,
        max_blocks_per_forward: int = 256,
    ):
        path = (
            Path(checkpoint_path) if checkpoint_path else _aisfx_dir() / "models" / "checkpoint.pth"
        )
        if not path.is_file():
            raise FileNotFoundError(f"aiSFX checkpoint not found at {path}")
        weights, ds_dict = load_aisfx_checkpoint(path)
        EmbeddingNet, CrossNet = _aisfx_model_classes()
        # the full CrossNet (as aisfx.inference.load_bestModel builds it) so that loading is
        # strict; only its embedding_net is used, the per-dataset classifier heads are not
        crossnet = CrossNet(EmbeddingNet("max", 3, 1, 64), ds_dict, "cpu")
        crossnet.load_state_dict(weights)
        net = fold_batchnorms(crossnet.embedding_net.eval())
        self.net = net.to(device, memory_format=torch.channels_last)
        self.device = device
        self.max_seconds = max_seconds  # None = the whole file
        self.max_blocks_per_forward = max_blocks_per_forward

    def load(self, path: str | Path) -> torch.Tensor:
        """Decode one file -> (n_blocks, 100, 96) spectrogram blocks (raises MediaDecodeError)."""
        wave = load_audio_mono(path, SAMPLE_RATE, max_seconds=self.max_seconds)
        return spectrogram_blocks(log_mel_spectrogram(torch.from_numpy(wave)))

    @torch.inference_mode()
    def embed_items(self, items: list[torch.Tensor]) -> np.ndarray:
        """List of (n_blocks_i, 100, 96) -> (B, 512): per-block embeddings, mean per clip, L2."""
        counts = torch.tensor([x.shape[0] for x in items])
        blocks = torch.cat(items).to(self.device)  # (sum n_blocks, 100, 96)
        emb = torch.cat([self.net(chunk) for chunk in blocks.split(self.max_blocks_per_forward)])
        clip = torch.repeat_interleave(torch.arange(len(items)), counts).to(emb.device)
        pooled = torch.zeros(len(items), emb.shape[1], device=emb.device).index_add_(0, clip, emb)
        pooled = pooled / counts.to(emb.device).unsqueeze(1)  # (B, 512)
        return F.normalize(pooled, dim=-1).float().cpu().numpy()

    def encode_waveforms(self, waves: list[np.ndarray]) -> np.ndarray:
        """Mono 44.1 kHz float waveforms -> (N, 512) embeddings."""
        if not waves:
            return np.zeros((0, self.dim), dtype=np.float32)
        blocks = [spectrogram_blocks(log_mel_spectrogram(torch.as_tensor(w))) for w in waves]
        return self.embed_items(blocks)
