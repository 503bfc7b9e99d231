"""Decoding: every format, rate, channel count and bit depth; every bad input."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from perceptlab.audio import decode
from perceptlab.audio.decode import (
    AudioError,
    EmptyAudioError,
    NonFiniteAudioError,
    NotAudioError,
    TruncatedAudioError,
    load,
    probe,
)
from conftest import tone, write_clip

FORMATS = [
    ("wav", "WAV", "PCM_16"),
    ("flac", "FLAC", "PCM_16"),
    ("ogg", "OGG", "VORBIS"),
    ("mp3", "MP3", "MPEG_LAYER_III"),
]


def _corr_with_tone(x: np.ndarray, rate: int, freq: float) -> float:
    ref = tone(len(x) / rate, rate, freq)[: len(x)]
    x = x[: len(ref)]
    return float(np.dot(x, ref) / (np.linalg.norm(x) * np.linalg.norm(ref) + 1e-12))


@pytest.mark.parametrize("ext,fmt,subtype", FORMATS)
def test_each_format_decodes_to_project_rate_mono(tmp_path, ext, fmt, subtype):
    p = write_clip(tmp_path / f"a.{ext}", seconds=1.0, rate=44100, channels=2, fmt=fmt, subtype=subtype)
    x = load(p)
    assert x.dtype == np.float32 and x.ndim == 1
    # MP3 pads with encoder delay; others are exact in length.
    assert abs(len(x) - 22050) <= (2000 if ext == "mp3" else 1)
    # Channels are averaged: amplitudes 0.5 and 0.25 -> 0.375.
    assert np.abs(x).max() == pytest.approx(0.375, abs=0.03)
    if ext != "mp3":  # MP3's encoder delay shifts the phase
        assert _corr_with_tone(x, 22050, 440.0) > 0.99


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000])
def test_sample_rates(tmp_path, rate):
    p = write_clip(tmp_path / "r.wav", seconds=0.5, rate=rate, freq=300.0)
    assert probe(p).sample_rate == rate
    x = load(p)
    assert len(x) == pytest.approx(0.5 * 22050, abs=1)
    assert _corr_with_tone(x[500:-500], 22050, 300.0) > 0.95 or _corr_with_tone(x, 22050, 300.0) > 0.99
    native = load(p, sample_rate=None)
    assert len(native) == int(0.5 * rate)


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5, 6, 7, 8])
def test_channel_counts_are_downmixed(tmp_path, channels):
    p = write_clip(tmp_path / "c.wav", seconds=0.25, channels=channels, amp=0.8)
    assert probe(p).channels == channels
    x = load(p)
    expected = 0.8 * np.mean([1 / (k + 1) for k in range(channels)])
    assert np.abs(x).max() == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize(
    "fmt,subtype",
    [("WAV", "PCM_U8"), ("FLAC", "PCM_S8"), ("WAV", "PCM_16"), ("WAV", "PCM_24"), ("FLAC", "PCM_24"),
     ("WAV", "PCM_32"), ("WAV", "FLOAT"), ("WAV", "DOUBLE")],
)
def test_bit_depths(tmp_path, fmt, subtype):
    p = write_clip(tmp_path / f"b.{fmt.lower()}", seconds=0.25, fmt=fmt, subtype=subtype)
    x = load(p)
    ref = tone(0.25, 22050)
    tol = 1e-2 if subtype.endswith("8") else 1e-4
    assert np.abs(x - ref).max() < tol


def test_excerpt_reads_only_the_excerpt(tmp_path, monkeypatch):
    rate = 22050
    ramp = np.linspace(-0.9, 0.9, rate * 4, dtype=np.float32)
    p = tmp_path / "ramp.wav"
    sf.write(p, ramp, rate, subtype="FLOAT")
    read_frames = []
    real_read = sf.SoundFile.read

    def counting_read(self, frames=-1, *a, **kw):
        out = real_read(self, frames, *a, **kw)
        read_frames.append(len(out))
        return out

    monkeypatch.setattr(sf.SoundFile, "read", counting_read)
    x = load(p, offset=1.5, duration=0.5)
    assert sum(read_frames) == rate // 2
    np.testing.assert_array_equal(x, ramp[int(1.5 * rate) : int(2.0 * rate)])


def test_long_file_is_never_float64(tmp_path):
    # 10 minutes of 22.05 kHz audio: float64 would need 106 MB, float32 53 MB.
    rate, seconds = 22050, 600
    p = tmp_path / "long.wav"
    with sf.SoundFile(p, "w", rate, 1, subtype="PCM_16") as fh:
        block = tone(10.0, rate, 220.0)
        for _ in range(seconds // 10):
            fh.write(block)
    tracemalloc.start()
    x = load(p)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert x.dtype == np.float32 and len(x) == rate * seconds
    assert peak < 1.2 * x.nbytes, f"peak {peak / 1e6:.0f} MB for a {x.nbytes / 1e6:.0f} MB result"


# --- bad input: every message names the file and the reason ---------------


def _assert_names(exc: AudioError, path, *words):
    msg = str(exc)
    assert str(path) in msg, msg
    assert any(w in msg.lower() for w in words), msg


def test_empty_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(EmptyAudioError) as e:
        load(p)
    _assert_names(e.value, p, "empty")


def test_header_only_file_has_no_frames(tmp_path):
    p = tmp_path / "noframes.wav"
    sf.write(p, np.zeros((0, 1), dtype=np.float32), 22050)
    with pytest.raises(EmptyAudioError) as e:
        load(p)
    _assert_names(e.value, p, "no audio frames")


def test_not_audio(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("these are my notes, not audio\n" * 50)
    with pytest.raises(NotAudioError) as e:
        load(p)
    _assert_names(e.value, p, "not a recognised audio format")


def test_missing_file(tmp_path):
    p = tmp_path / "nope.flac"
    with pytest.raises(AudioError) as e:
        load(p)
    _assert_names(e.value, p, "does not exist")


@pytest.mark.parametrize("ext,fmt,subtype", FORMATS)
def test_truncated_files(tmp_path, ext, fmt, subtype):
    good = write_clip(tmp_path / f"good.{ext}", seconds=2.0, rate=44100, fmt=fmt, subtype=subtype)
    p = tmp_path / f"cut.{ext}"
    data = good.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises((TruncatedAudioError, EmptyAudioError)) as e:
        load(p)
    _assert_names(e.value, p, "truncated", "lost sync", "no audio frames")


def test_non_finite_samples(tmp_path):
    p = tmp_path / "nan.wav"
    x = tone(0.5, 22050)
    x[5000] = np.nan
    sf.write(p, x, 22050, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError) as e:
        load(p)
    _assert_names(e.value, p, "non-finite")
    assert "0.227 s" in str(e.value)  # sample 5000 at 22,050 Hz


def test_excerpt_outside_file(tmp_path):
    p = write_clip(tmp_path / "short.wav", seconds=1.0)
    with pytest.raises(AudioError) as e:
        load(p, offset=5.0)
    _assert_names(e.value, p, "after the end")


def test_folder_is_not_a_file(tmp_path):
    with pytest.raises(AudioError) as e:
        load(tmp_path)
    _assert_names(e.value, tmp_path, "folder")


def test_extension_set_covers_formats():
    assert {".wav", ".flac", ".ogg", ".mp3"} <= decode.AUDIO_EXTENSIONS
