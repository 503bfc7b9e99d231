"""Log-mel features: shape, range, the fixed dB mapping, the excerpt rule, hashing."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from perceptlab.audio.features import (
    FeatureConfig,
    db_to_unit,
    excerpt,
    log_mel,
    mel_frequencies,
    unit_to_db,
    windows,
)
from conftest import tone


def _music(seconds=3.0, rate=22050, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate(rng.uniform(100, 4000, 6)))
    x = x + 0.02 * rng.standard_normal(t.size)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def test_shape_dtype_and_range():
    cfg = FeatureConfig()
    x = _music(3.0)
    s = log_mel(x, cfg)
    assert s.shape == (128, 1 + x.size // 512)
    assert s.dtype == np.float32
    assert s.min() >= 0.0 and s.max() <= 1.0


# The fixed dB mapping, seen with loudness alignment off (levels as recorded).
RAW = FeatureConfig(loudness_target=None)


def test_full_scale_sine_peaks_near_one_and_silence_is_zero():
    cfg = RAW
    for f in (100.0, 1000.0, 8000.0):
        s = log_mel(tone(1.0, 22050, f, amp=1.0), cfg)
        assert 0.94 < s[:, 5:-5].max() <= 1.0, f
    assert log_mel(np.zeros(22050, np.float32), cfg).max() == 0.0


def test_quieter_copy_is_darker_not_rescaled():
    cfg = RAW
    x = _music(2.0)
    loud, quiet = log_mel(x, cfg), log_mel(x * 10 ** (-6 / 20), cfg)
    step = 6.0 / (cfg.db_ceiling - cfg.db_floor)
    above = (quiet > 0.01) & (loud < 0.99)  # away from both clipping ends
    assert above.mean() > 0.5
    np.testing.assert_allclose(loud[above] - quiet[above], step, atol=1e-3)
    # A per-clip min-max mapping would make the two images equal; ours does not.
    assert quiet.mean() < loud.mean() - 0.5 * step


def test_chunked_stft_equals_one_shot_reference():
    cfg = RAW
    x = _music(4.0)
    s_small_chunks = log_mel(x, cfg, chunk_frames=7)  # 173 frames in 25 chunks
    s = log_mel(x, cfg)
    assert s.shape == s_small_chunks.shape == (cfg.n_mels, 173)
    # Not bit-exact: float32 STFTs and the filterbank product over blocks of
    # different sizes take different kernels and summation orders, so values
    # differ by an ulp or two (1.2e-7 on a [0, 1] value) on some CPUs, and
    # more where another CPU's FFT kernel rounds differently. The float32
    # pipeline itself is only within ~2e-6 of float64 (below), so 5e-6 is
    # what two correct float32 orders can disagree by; a chunk-boundary
    # mistake (a lost, repeated or shifted frame) moves values by > 1e-2.
    np.testing.assert_allclose(s_small_chunks, s, atol=5e-6, rtol=0)
    # Independent float64 reference: torch.stft with centring + the same filterbank.
    import torchaudio.functional as AF

    w = torch.hann_window(cfg.n_fft, dtype=torch.float64)
    spec = torch.stft(torch.from_numpy(x).double(), cfg.n_fft, cfg.hop_length, window=w, center=True,
                      pad_mode="reflect", return_complex=True).abs() ** 2 * (2 / w.sum()) ** 2
    fb = AF.melscale_fbanks(cfg.n_fft // 2 + 1, cfg.f_min, cfg.f_max, cfg.n_mels, cfg.sample_rate,
                            norm=None, mel_scale="slaney").double()
    ref = db_to_unit(10 * torch.log10((fb.T @ spec).clamp_min(1e-12)), cfg).numpy()
    # float32 FFT rounding, relative to a frame's loudest bin, shows in bins
    # 70 dB below it: measured up to 2.1e-6 here; 1e-5 leaves room for other
    # CPUs' kernels while any padding, window or scaling error is far larger.
    np.testing.assert_allclose(s, ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(s_small_chunks, ref, atol=1e-5, rtol=0)


def test_db_mapping_round_trip():
    cfg = FeatureConfig()
    db = np.array([-100.0, -80.0, -40.0, 0.0, 3.0, 10.0])
    v = db_to_unit(db, cfg)
    np.testing.assert_allclose(v, [0, 0, 40 / 83, 80 / 83, 1, 1])
    np.testing.assert_allclose(unit_to_db(v[1:4], cfg), db[1:4])


def test_config_hash_is_stable_and_sensitive():
    a, b = FeatureConfig(), FeatureConfig()
    assert a.hash == b.hash
    # Pinned: changing it silently would orphan every cached feature.
    assert a.hash == "933388f9703b69eb"
    assert FeatureConfig(n_mels=64).hash != a.hash
    assert FeatureConfig(loudness_target=None).hash != a.hash
    assert FeatureConfig(loudness_target=-16.0).hash != a.hash
    assert FeatureConfig(db_floor=-90.0).hash != a.hash
    assert FeatureConfig(f_min=0).hash == a.hash  # int vs float does not matter
    out = subprocess.run([sys.executable, "-c",
                          "from perceptlab.audio.features import FeatureConfig; print(FeatureConfig().hash)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == a.hash
    assert FeatureConfig.from_dict(a.to_dict()) == a
    # A config written before loudness alignment existed keeps levels as recorded.
    old = {k: v for k, v in a.to_dict().items() if k not in ("loudness_target", "resampler")}
    assert FeatureConfig.from_dict(old).loudness_target is None
    assert FeatureConfig.from_dict(dict(old, loudness_target="off")).loudness_target is None


@pytest.mark.parametrize("bad", [dict(n_mels=0), dict(hop_length=0), dict(f_max=20000.0),
                                 dict(db_floor=5.0), dict(sample_rate=-1)])
def test_bad_config_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="invalid FeatureConfig"):
        FeatureConfig(**bad)


def test_mel_frequencies_are_increasing_and_in_range():
    cfg = FeatureConfig()
    f = mel_frequencies(cfg)
    assert f.shape == (128,) and np.all(np.diff(f) > 0)
    assert cfg.f_min < f[0] < 100 and 9000 < f[-1] < cfg.f_max


def test_excerpt_rule():
    spec = np.arange(10 * 300, dtype=np.float32).reshape(10, 300)
    e = excerpt(spec, 128)
    assert e.shape == (10, 128)
    np.testing.assert_array_equal(e, spec[:, 86:214])  # centred
    short = spec[:, :50]
    e = excerpt(short, 128)
    np.testing.assert_array_equal(e[:, :50], short)
    np.testing.assert_array_equal(e[:, 50:100], short)  # looped
    np.testing.assert_array_equal(e[:, 100:], short[:, :28])
    with pytest.raises(ValueError):
        excerpt(spec[:, :0], 128)


def test_windows_cover_the_whole_clip():
    spec = np.random.default_rng(0).random((8, 300), dtype=np.float32)
    w = windows(spec, 128, 64)
    assert w.shape[1:] == (8, 128)
    np.testing.assert_array_equal(w[0], spec[:, :128])
    np.testing.assert_array_equal(w[-1], spec[:, -128:])  # tail kept
    assert windows(spec[:, :100], 128).shape == (1, 8, 128)


def test_bad_signal():
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="empty"):
        log_mel(np.zeros(0, np.float32))


def test_mel_frequencies_match_the_filterbank_peaks():
    import torchaudio.functional as AF

    cfg = FeatureConfig()
    fb = AF.melscale_fbanks(cfg.n_fft // 2 + 1, cfg.f_min, cfg.f_max, cfg.n_mels, cfg.sample_rate,
                            norm=None, mel_scale="slaney").numpy()
    bin_hz = np.linspace(0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
    peaks = bin_hz[fb.argmax(axis=0)]
    # Each band's peak FFT bin lies within one bin of its centre frequency.
    assert np.all(np.abs(peaks - mel_frequencies(cfg)) <= cfg.sample_rate / cfg.n_fft)
