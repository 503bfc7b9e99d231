"""The reverb renders the stimuli it always rendered.

``tests/data/reverb/*.npy`` were rendered by the reverb as it was when it
convolved through hand-padded numpy FFTs (see ``tests/data/reverb/README.md``);
:func:`_reference_reverb` is that computation, numpy only, for cases the
files do not hold.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from perceptlab.audio.distort import Recipe, apply
from test_distort import music

DATA = Path(__file__).parent / "data" / "reverb"

# file stem: (recipe, seconds, rate)
CASES = {
    "rt0.5_wet0.4_seed2_16k": ("reverb:rt60_s=0.5,wet=0.4,seed=2", 0.5, 16000),
    "rt1.5_wet1_seed7_16k": ("reverb:rt60_s=1.5,wet=1.0,seed=7", 0.25, 16000),  # response longer than the clip
    "rt0.3_wet0.3_seed0_44k": ("reverb:rt60_s=0.3,seed=0", 0.3, 44100),
}


def _smooth_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n, by enumeration."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            q = p35
            while q < n:
                q *= 2
            best = min(best, q)
            p35 *= 3
        p5 *= 5
    return best


def _reference_reverb(x: np.ndarray, rate: int, rt60: float, wet: float, seed: int) -> np.ndarray:
    """The convolution reverb written out with numpy FFTs, in float64, then float32 as ``apply`` returns."""
    x = x.astype(np.float64)
    n_ir = max(1, int(round(rt60 * rate)))
    t = np.arange(n_ir) / rate
    ir = np.random.default_rng(seed).standard_normal(n_ir) * np.exp(-math.log(1000.0) * t / rt60)
    ir /= math.sqrt(float(np.dot(ir, ir)))
    m = _smooth_len(x.size + n_ir - 1)
    rev = np.fft.irfft(np.fft.rfft(x, m) * np.fft.rfft(ir, m), m)[: x.size]
    e_dry, e_rev = float(np.dot(x, x)), float(np.dot(rev, rev))
    if e_rev > 0:
        rev *= math.sqrt(e_dry / e_rev)
    return ((1.0 - wet) * x + wet * rev).astype(np.float32)


@pytest.mark.parametrize("stem", sorted(CASES))
def test_reverb_matches_the_stimuli_rendered_before(stem):
    text, seconds, rate = CASES[stem]
    before = np.load(DATA / f"{stem}.npy")
    now = apply(Recipe.parse(text), music(seconds, rate), rate)
    assert now.dtype == np.float32 and now.shape == before.shape
    # float32 output: a last-bit difference of a sample near the peak (about 0.45) is 3e-8.
    np.testing.assert_allclose(now, before, rtol=0, atol=1e-6)
    assert float(np.abs(now - before).max()) <= 1e-6 * float(np.abs(before).max()) + 1e-7


@pytest.mark.parametrize("n, rate, rt60, wet, seed", [
    (1, 8000, 0.01, 0.5, 0),        # one sample
    (997, 8000, 0.0001, 0.7, 1),    # a one-tap response (rt60 * rate rounds to 1)
    (4801, 22050, 0.35, 0.3, 5),    # an odd length, response shorter than the clip
    (3001, 16000, 2.0, 1.0, 9),     # response ten times longer than the clip
])
def test_reverb_equals_the_numpy_reference(n, rate, rt60, wet, seed):
    x = np.random.default_rng(seed + 100).standard_normal(n).astype(np.float32) * 0.3
    got = apply(Recipe("reverb", {"rt60_s": rt60, "wet": wet}, seed=seed), x, rate)
    ref = _reference_reverb(x, rate, rt60, wet, seed)
    assert got.shape == (n,)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * max(1.0, float(np.abs(ref).max())))


def test_reverb_of_silence_is_silence():
    y = apply(Recipe("reverb", {"rt60_s": 0.2, "wet": 0.5}, seed=3), np.zeros(2000, np.float32), 16000)
    assert np.array_equal(y, np.zeros(2000, np.float32))
