"""``perceptlab bench import``: decode + log-mel throughput as a real-time factor.

The factor is seconds of audio processed per second of wall time, with no
feature cache: each clip is decoded from disk, resampled if needed, and turned
into its log-mel image, exactly as an import does. Test clips are 30 s long,
written to a temporary folder: 22.05 kHz mono WAV (the target case), plus
44.1 kHz stereo WAV and FLAC for context (those pay for resampling and
decompression).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from perceptlab.audio.decode import load
from perceptlab.audio.features import FeatureConfig, log_mel


def _music_like(seconds: float, rate: int, seed: int) -> np.ndarray:
    """A 30 s signal with notes, harmonics and noise (spectrally busy, not silence)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    out = np.zeros(n, dtype=np.float64)
    note_len = int(0.25 * rate)
    for start in range(0, n, note_len):
        f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        seg = slice(start, min(n, start + note_len))
        env = np.exp(-np.arange(seg.stop - seg.start) / (0.1 * rate))
        for h in range(1, 6):
            out[seg] += env * np.sin(2 * np.pi * f0 * h * t[seg]) / h
    out += 0.01 * rng.standard_normal(n)
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def run_import_bench(n_clips: int = 12, seconds: float = 30.0, out: Callable[[str], None] = print) -> dict:
    """Time decode + features over ``n_clips`` clips of each kind; return the figures."""
    import soundfile as sf
    import torch

    cfg = FeatureConfig()
    cases = [
        ("22.05 kHz mono WAV", 22050, 1, "WAV"),
        ("44.1 kHz stereo WAV", 44100, 2, "WAV"),
        ("44.1 kHz stereo FLAC", 44100, 2, "FLAC"),
    ]
    results = {}
    out(f"perceptlab bench import: {n_clips} clips x {seconds:.0f} s per case, cache off, "
        f"torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory(prefix="perceptlab-bench-") as tmp:
        for name, rate, channels, fmt in cases:
            files = []
            for i in range(n_clips):
                mono = _music_like(seconds, rate, seed=i)
                data = mono if channels == 1 else np.stack([mono, mono[::-1]], axis=1)
                p = Path(tmp, f"{fmt}_{rate}_{channels}_{i}.{fmt.lower()}")
                sf.write(p, data, rate, format=fmt, subtype="PCM_16")
                files.append(p)
            # Warm-up: first calls build the resampling and mel kernels.
            log_mel(load(files[0], cfg.sample_rate), cfg)
            t0 = time.perf_counter()
            for p in files:
                log_mel(load(p, cfg.sample_rate), cfg)
            wall = time.perf_counter() - t0
            rtf = n_clips * seconds / wall
            results[name] = {"clips": n_clips, "audio_s": n_clips * seconds, "wall_s": wall, "realtime_factor": rtf}
            out(f"  {name:<22} {wall:7.2f} s wall  {rtf:8.0f}x real time")
    return results
