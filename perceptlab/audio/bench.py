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

from perceptlab.audio.decode import iter_blocks
from perceptlab.audio.features import FeatureConfig, log_mel_blocks


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
            log_mel_blocks(iter_blocks(files[0], cfg.sample_rate), cfg)
            t0 = time.perf_counter()
            for p in files:
                log_mel_blocks(iter_blocks(p, cfg.sample_rate), cfg)
            wall = time.perf_counter() - t0
            rtf = n_clips * seconds / wall
            results[name] = {"clips": n_clips, "audio_s": n_clips * seconds, "wall_s": wall, "realtime_factor": rtf}
            out(f"  {name:<22} {wall:7.2f} s wall  {rtf:8.0f}x real time")
    return results


_IMPORT_ONE = """
import resource, sys
from perceptlab.library.importer import import_files
from perceptlab.library.store import Library
with Library(sys.argv[1]) as lib:
    summary = import_files(lib, [sys.argv[2]])
assert not summary.failed, summary.failed
# The peak of THIS program: VmHWM starts afresh at exec, while ru_maxrss keeps
# the size of the process it was forked from (a large test runner, say).
try:
    with open("/proc/self/status") as fh:
        print(next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")))  # KiB
except (OSError, StopIteration):
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
"""


def _write_long_wav(path: Path, minutes: float, rate: int = 44100) -> None:
    """A ``minutes``-long 44.1 kHz stereo 16-bit WAV, written a block at a time."""
    import soundfile as sf

    block = _music_like(30.0, rate, seed=0)
    stereo = np.stack([block, block[::-1]], axis=1)  # (n, 2)
    with sf.SoundFile(path, "w", rate, 2, subtype="PCM_16") as fh:
        for _ in range(int(round(minutes * 2))):
            fh.write(stereo)


def import_peak_rss_mb(minutes: float, tmp: str | Path) -> float:
    """Peak RSS in MB of a fresh process that imports one long file."""
    import subprocess
    import sys

    tmp = Path(tmp)
    wav = tmp / f"long_{minutes:g}min.wav"
    _write_long_wav(wav, minutes)
    lib = tmp / f"long_{minutes:g}min.sqlite"
    done = subprocess.run([sys.executable, "-c", _IMPORT_ONE, str(lib), str(wav)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"import of {wav} failed: {done.stderr.strip().splitlines()[-1:]}")
    wav.unlink()
    return int(done.stdout.split()[-1]) / 1024  # KiB -> MB


def run_memory_bench(minutes: float = 60.0, out: Callable[[str], None] = print) -> dict:
    """Peak RSS of importing one long 44.1 kHz stereo WAV, against a 1-minute file.

    Each import runs in its own process so the figure is that import's peak
    alone; the 1-minute file is the baseline (interpreter, torch, kernels),
    so the ratio shows how much memory grows with duration.
    """
    with tempfile.TemporaryDirectory(prefix="perceptlab-bench-") as tmp:
        base = import_peak_rss_mb(1.0, tmp)
        long = import_peak_rss_mb(minutes, tmp)
    out("perceptlab bench memory: peak RSS importing one 44.1 kHz stereo WAV (a process each)")
    out(f"  1 min    {base:8.0f} MB")
    out(f"  {minutes:g} min {long:8.0f} MB   ratio {long / base:.2f}x the 1-minute import")
    return {"baseline_minutes": 1.0, "baseline_peak_rss_mb": base, "minutes": minutes,
            "peak_rss_mb": long, "ratio": long / base}
