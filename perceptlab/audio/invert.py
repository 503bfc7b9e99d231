"""Back from a log-mel image to audio, so users can hear what an encoder keeps.

The image's fixed dB mapping is undone, the mel power spectrum is mapped back
to a linear-frequency power spectrum by non-negative least squares
(torchaudio ``InverseMelScale``), the STFT scaling of
:func:`perceptlab.audio.features.log_mel` is undone, and Griffin-Lim
(torchaudio) estimates the phase. Levels below the image's dB floor are lost,
and the mel filterbank blurs high frequencies, so the result is a rough,
phasey rendition: enough to hear pitch, rhythm and timbre, not fidelity.
"""

from __future__ import annotations

import numpy as np

from perceptlab.audio.features import FeatureConfig, unit_to_db


def griffin_lim_audio(image: np.ndarray, config: FeatureConfig = FeatureConfig(), n_iter: int = 32,
                      seed: int = 0) -> np.ndarray:
    """Audio (float32, at ``config.sample_rate``) whose log-mel image approximates ``image``.

    Parameters
    ----------
    image : numpy.ndarray
        (n_mels, T) in [0, 1] on the fixed scale.
    n_iter : int
        Griffin-Lim iterations.
    seed : int
        Seeds Griffin-Lim's random initial phase, for repeatable output.
    """
    import torch
    import torchaudio.transforms as T

    if image.ndim != 2 or image.shape[0] != config.n_mels:
        raise ValueError(f"expected an ({config.n_mels}, T) image, got shape {image.shape}")
    db = unit_to_db(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)), config)
    mel_power = torch.pow(10.0, db / 10.0)  # (F, T)
    # Below the floor the image holds no information; treat it as silence.
    mel_power = torch.where(image_t(image) <= 0, torch.zeros_like(mel_power), mel_power)
    n_stft = config.n_fft // 2 + 1
    inv = T.InverseMelScale(n_stft=n_stft, n_mels=config.n_mels, sample_rate=config.sample_rate,
                            f_min=config.f_min, f_max=config.f_max, norm=None, mel_scale="slaney")
    window_sum = float(torch.hann_window(config.n_fft).sum())
    with torch.no_grad():
        power = inv(mel_power).clamp_min(0.0)  # (n_stft, T), scaled like log_mel's STFT
        power = power / (2.0 / window_sum) ** 2  # undo the sine-calibrated scaling
        gl = T.GriffinLim(n_fft=config.n_fft, hop_length=config.hop_length, win_length=config.n_fft,
                          power=2.0, n_iter=n_iter, rand_init=True)
        torch.manual_seed(seed)
        wave = gl(power)
    wave = wave.numpy().astype(np.float32)
    peak = float(np.abs(wave).max())
    return wave / peak * 0.9 if peak > 1.0 else wave


def image_t(image: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
