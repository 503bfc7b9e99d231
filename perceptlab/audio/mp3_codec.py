"""Constant-bitrate MP3 encode and decode in memory, time-aligned: the ``mp3`` distortion.

:func:`mp3_roundtrip` writes a signal through libsndfile/LAME at a bitrate
MPEG allows at the rate and reads it back with the codec delay removed, so the
output has the input's length and timing. Rates LAME cannot encode are
resampled to 48 kHz and back. :mod:`perceptlab.audio.distort` registers it as
the ``mp3`` kind.
"""

from __future__ import annotations

import io

import numpy as np

#: Rates libsndfile/LAME encode, and the bitrates MPEG allows at each.
MP3_BITRATES = {
    "mpeg1": (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    "mpeg2": (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    "mpeg25": (8, 16, 24, 32, 40, 48, 56, 64),
}
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
# Encoder (576) + decoder (529) delay of LAME/mpg123 when the stream carries
# no gapless (Xing/LAME) header; libsndfile drops it by itself otherwise.
MP3_DELAY = 1105


def mp3_table(rate: int) -> tuple[str, tuple[int, ...], float, float]:
    """The MPEG version at ``rate``, its bitrates (kbps) and their lowest and highest."""
    if rate >= 32000:
        return "MPEG-1", MP3_BITRATES["mpeg1"], 32.0, 320.0
    if rate >= 16000:
        return "MPEG-2", MP3_BITRATES["mpeg2"], 8.0, 160.0
    return "MPEG-2.5", MP3_BITRATES["mpeg25"], 8.0, 64.0


def mp3_roundtrip(x: np.ndarray, rate: int, br: int) -> np.ndarray:
    """``x`` (mono float64 at ``rate``) through MP3 at ``br`` kbit/s and back, same length, float64.

    Raises
    ------
    ValueError
        ``br`` is not a bitrate of the MPEG version at the (encoding) rate.
    """
    import soundfile as sf

    from perceptlab.audio.decode import resample

    enc_rate = rate if rate in MP3_RATES else 48000
    version, allowed, lo, hi = mp3_table(enc_rate)
    if br not in allowed:
        raise ValueError(
            f"mp3: bitrate_kbps={br} is not an {version} bitrate at {enc_rate} Hz; "
            f"choose one of {', '.join(map(str, allowed))}"
        )
    src = x.astype(np.float32)
    if enc_rate != rate:
        src = resample(src, rate, enc_rate)
    # libsndfile maps compression c to int(hi - c (hi - lo)) kbps; aim half a
    # kbps above the target so the truncation lands on it.
    level = min(1.0, max(0.0, (hi - (br + 0.5)) / (hi - lo)))
    buf = io.BytesIO()
    sf.write(buf, src, enc_rate, format="MP3", subtype="MPEG_LAYER_III",
             compression_level=level, bitrate_mode="CONSTANT")
    buf.seek(0)
    y, got_rate = sf.read(buf, dtype="float32")
    if y.ndim > 1:
        y = y.mean(axis=1)
    n = src.size
    if y.size != n:
        # No gapless header: the stream starts with the codec delay. Check
        # the known delay against no delay by correlation, to be safe.
        def corr(lag):
            seg = y[lag : lag + n]
            m = min(seg.size, n)
            return float(np.dot(seg[:m], src[:m]))

        lag = MP3_DELAY if y.size >= n + MP3_DELAY and corr(MP3_DELAY) >= corr(0) else 0
        y = y[lag : lag + n]
        if y.size < n:
            y = np.concatenate([y, np.zeros(n - y.size, np.float32)])
    if got_rate != rate:
        y = resample(np.ascontiguousarray(y, dtype=np.float32), got_rate, rate)
        y = y[: x.size] if y.size >= x.size else np.concatenate([y, np.zeros(x.size - y.size, np.float32)])
    return y.astype(np.float64)
