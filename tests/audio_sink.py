"""Reading back what was played through the ALSA file sink (see .ci/run)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


def sink_path() -> Path:
    """The file ALSA's default device writes to; skips (fails in strict CI) if not set up."""
    path = os.environ.get("PERCEPTLAB_ALSA_SINK")
    if not path or not os.environ.get("ALSA_CONFIG_PATH"):
        pytest.skip("no ALSA file sink: set ALSA_CONFIG_PATH and PERCEPTLAB_ALSA_SINK as .ci/run does")
    return Path(path)


def played_samples(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype=np.float32) if path.exists() else np.zeros(0, np.float32)


def locate(needle: np.ndarray, haystack: np.ndarray) -> tuple[int, float]:
    """Offset of ``needle`` in ``haystack`` (FFT cross-correlation) and the max abs error there."""
    n, m = len(needle), len(haystack)
    if m < n:
        return -1, float("inf")
    size = 1 << int(np.ceil(np.log2(n + m)))
    corr = np.fft.irfft(np.fft.rfft(haystack, size) * np.conj(np.fft.rfft(needle, size)), size)[: m - n + 1]
    k = int(np.argmax(corr))
    return k, float(np.abs(haystack[k : k + n] - needle).max())
