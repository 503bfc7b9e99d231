"""The measurement path, file to number: what a listener hears is what is measured.

Alias-free resampling, loudness alignment, whole-clip comparison, time
alignment and the baselines, each checked on files written to disk and read
back through the same code the CLI and the GUI use.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from perceptlab.analysis.matrices import library_matrix
from perceptlab.analysis.similarity import Query, pair_comparison, pair_distances
from perceptlab.audio.bench import _music_like
from perceptlab.audio.decode import load
from perceptlab.audio.features import FeatureConfig, compared_width, log_mel, unit_to_db
from perceptlab.audio.loudness import integrated_loudness
from perceptlab.library.features import file_image
from perceptlab.library.importer import import_files
from perceptlab.library.store import Library


RAW = FeatureConfig(loudness_target=None)
SPECTROGRAM_METRICS = ("mse", "nlpd", "msssim")
ALL_METRICS = SPECTROGRAM_METRICS + ("logmel-stats", "mfcc-stats")


def _faded_tone(freq: float, rate: int, seconds: float = 2.0, amp: float = 0.5) -> np.ndarray:
    """A tone with 0.2 s raised-cosine fades: a hard onset is a broadband click, not the tone."""
    n = int(seconds * rate)
    x = amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)
    ramp = int(0.2 * rate)
    fade = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    x[:ramp] *= fade
    x[-ramp:] *= fade[::-1]
    return x.astype(np.float32)


def _music(seconds: float, rate: int = 22050, seed: int = 0) -> np.ndarray:
    """Notes with harmonics and decays, a little noise: busy everywhere, never silent."""
    return _music_like(seconds, rate, seed)


def _write(path, x, rate=22050):
    sf.write(path, x, rate, subtype="FLOAT")
    return path


def _query(path) -> Query:
    return Query(str(path), path.name)


@pytest.mark.parametrize("rate", [44100, 48000, 96000])
def test_tones_above_the_new_nyquist_vanish_and_tones_below_keep_their_level(tmp_path, rate):
    for freq in (11500, 12000, 13000, 16000, 18000):
        p = _write(tmp_path / f"t{freq}.wav", _faded_tone(freq, rate), rate)
        for cfg in (FeatureConfig(), RAW):
            image = file_image(p, cfg)
            assert image.max() == 0.0, (rate, freq, cfg.loudness_target, float(unit_to_db(image.max(), cfg)))
    for freq in (9000, 10000):
        p = _write(tmp_path / f"t{freq}.wav", _faded_tone(freq, rate), rate)
        got = file_image(p, RAW)
        native = log_mel(_faded_tone(freq, 22050), RAW)
        mid = slice(20, -20)  # away from the fades
        level = float(unit_to_db(got[:, mid].max(), RAW) - unit_to_db(native[:, mid].max(), RAW))
        assert abs(level) < 0.1, (rate, freq, level)


def test_quieter_copy_gives_the_same_image_and_distance_zero(tmp_path):
    x = _music(4.0)
    loud = _write(tmp_path / "loud.wav", x)
    quiet = _write(tmp_path / "quiet.wav", x * 10 ** (-6 / 20))
    cfg = FeatureConfig()
    a, b = file_image(loud, cfg), file_image(quiet, cfg)
    np.testing.assert_allclose(a, b, atol=1e-3)
    # The measure is BS.1770's: the copy reads 6 LU lower before alignment.
    assert integrated_loudness(load(loud), 22050) - integrated_loudness(load(quiet), 22050) == \
        pytest.approx(6.0, abs=0.01)
    d = pair_distances(None, _query(loud), _query(quiet), SPECTROGRAM_METRICS, cfg)
    assert max(d.values()) < 1e-3, d
    # Without alignment the same pair is clearly apart.
    raw = pair_distances(None, _query(loud), _query(quiet), SPECTROGRAM_METRICS, RAW)
    assert min(raw.values()) > 10 * max(d.values()), raw


def test_silence_is_never_boosted(tmp_path):
    silent = _write(tmp_path / "silent.wav", np.zeros(22050, np.float32))
    assert file_image(silent, FeatureConfig()).max() == 0.0


@pytest.mark.parametrize("where", ["start", "end"])
def test_a_change_in_the_first_or_last_half_second_counts(tmp_path, where):
    x = _music(6.0, seed=3)
    y = x.copy()
    half = int(0.5 * 22050)
    if where == "start":
        y[:half] = 0.0
    else:
        y[-half:] = 0.0
    a, b = _write(tmp_path / "a.wav", x), _write(tmp_path / "b.wav", y)
    whole = pair_distances(None, _query(a), _query(b), SPECTROGRAM_METRICS, align=False)
    # Levels as recorded, so loudness alignment cannot carry the change into the centre.
    centre = pair_distances(None, _query(a), _query(b), SPECTROGRAM_METRICS, RAW, excerpt="centre")
    for m in SPECTROGRAM_METRICS:
        assert whole[m] > 1e-3, (m, whole)
        # The centre excerpt never sees the change: that is why it is not the default.
        assert centre[m] == pytest.approx(0.0, abs=1e-6), (m, centre)


def test_unequal_lengths_are_symmetric_and_cover_both_clips(tmp_path):
    a = _write(tmp_path / "a.wav", _music(3.0, seed=1))
    b = _write(tmp_path / "b.wav", _music(5.0, seed=2))
    ab = pair_comparison(None, _query(a), _query(b), SPECTROGRAM_METRICS)
    ba = pair_comparison(None, _query(b), _query(a), SPECTROGRAM_METRICS)
    for m in SPECTROGRAM_METRICS:
        assert ab.distances[m] == pytest.approx(ba.distances[m], rel=1e-6, abs=1e-9)
        assert ab.distances[m] > 0
    assert ab.width_frames == compared_width(RAW.frames_for(5 * 22050)) >= RAW.frames_for(5 * 22050)
    assert ab.region_a == (0.0, pytest.approx(3.0, abs=0.05)) and ab.region_b[1] == pytest.approx(5.0, abs=0.05)
    same = pair_distances(None, _query(a), _query(a), SPECTROGRAM_METRICS)
    assert max(same.values()) == pytest.approx(0.0, abs=1e-6)


def test_a_delayed_copy_is_aligned_to_a_small_fraction_of_its_unaligned_distance(tmp_path):
    x = _music(4.0, seed=5)
    lag = int(0.030 * 22050)
    delayed = np.concatenate([np.zeros(lag, np.float32), x])[: x.size]
    a, b = _write(tmp_path / "a.wav", x), _write(tmp_path / "b.wav", delayed)
    aligned = pair_comparison(None, _query(a), _query(b), SPECTROGRAM_METRICS)
    unaligned = pair_distances(None, _query(a), _query(b), SPECTROGRAM_METRICS, align=False)
    assert aligned.lag_s == pytest.approx(0.030, abs=1 / 22050)
    for m in SPECTROGRAM_METRICS:
        assert aligned.distances[m] < 0.1 * unaligned[m], (m, aligned.distances[m], unaligned[m])
    # Swapping the clips finds the opposite lag and the same distances.
    back = pair_comparison(None, _query(b), _query(a), SPECTROGRAM_METRICS)
    assert back.lag_s == pytest.approx(-aligned.lag_s)
    for m in SPECTROGRAM_METRICS:
        assert back.distances[m] == pytest.approx(aligned.distances[m], rel=1e-5, abs=1e-9)


def test_matrix_of_mixed_lengths_equals_the_pair_rule(tmp_path):
    root = tmp_path / "clips" / "x"
    root.mkdir(parents=True)
    for i, seconds in enumerate([0.3, 1.0, 1.05, 2.5, 2.5, 4.0]):
        _write(root / f"c{i}.wav", _music(seconds, seed=10 + i))
    with Library(tmp_path / "lib.sqlite") as lib:
        import_files(lib, [root])
        clips = lib.clips()
        queries = [Query(c.path, c.name, c) for c in clips]
        for metric in ALL_METRICS:
            _, d = library_matrix(lib, metric)
            assert np.allclose(d, d.T) and np.all(np.diag(d) == 0)
            for i in range(len(clips)):
                for j in range(i + 1, len(clips)):
                    pair = pair_distances(lib, queries[i], queries[j], [metric], align=False)[metric]
                    assert d[i, j] == pytest.approx(pair, rel=1e-4, abs=1e-6), (metric, i, j)


def test_baselines_are_near_zero_for_a_quieter_copy_in_a_library(tmp_path):
    root = tmp_path / "clips" / "x"
    root.mkdir(parents=True)
    for i in range(4):
        _write(root / f"c{i}.wav", _music(2.0, seed=20 + i))
    x = _music(2.0, seed=20)
    _write(root / "quiet.wav", x * 10 ** (-6 / 20))
    with Library(tmp_path / "lib.sqlite") as lib:
        import_files(lib, [root])
        by_name = {c.name: c for c in lib.clips()}
        a, b = (Query(by_name[n].path, n, by_name[n]) for n in ("c0.wav", "quiet.wav"))
        d = pair_distances(lib, a, b, ALL_METRICS)
    assert max(d.values()) < 1e-3, d
