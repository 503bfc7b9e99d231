"""Integrated loudness (ITU-R BS.1770-4), measured as a stream.

The K-weighting filters are pyloudnorm's (a high shelf and a high pass,
redesigned for any sample rate); the gating is BS.1770-4's: 400 ms blocks
every 100 ms, an absolute gate at -70 LUFS, then a relative gate 10 LU below
the loudness of the blocks that passed. :class:`LoudnessMeter` takes a
signal block by block, so the loudness of an hour-long file costs no more
memory than a minute's (it keeps one mean square per 100 ms); on a whole
signal it equals ``pyloudnorm.Meter(rate).integrated_loudness`` (checked in
the tests to 0.01 LU).

Two edge cases BS.1770 leaves open, decided here:

* digital silence, or a clip whose every block is below the -70 LUFS gate,
  has no loudness: :meth:`LoudnessMeter.lufs` returns ``-inf`` and
  :func:`alignment_gain_db` gives 0 dB (silence stays silence, it is never
  boosted into noise);
* a clip shorter than one 400 ms block is measured as one block over its
  whole length (the mean square of the K-weighted clip, same gates).

What perceptlab measures is the mono downmix at the analysis rate, which is
what the metrics see; on a stereo file with correlated channels this reads
up to 3 dB below a stereo BS.1770 meter, the same for every clip.
"""

from __future__ import annotations

import math

import numpy as np

#: Absolute gate of BS.1770-4, in LUFS.
ABSOLUTE_GATE = -70.0
#: Relative gate, in LU below the absolutely gated loudness.
RELATIVE_GATE = 10.0


class LoudnessMeter:
    """Integrated loudness of a mono signal pushed in blocks.

    Parameters
    ----------
    rate : int
        Sample rate of the blocks.
    """

    def __init__(self, rate: int):
        from pyloudnorm import Meter

        self.rate = int(rate)
        # The two K-weighting biquads as one second-order-section cascade,
        # run in float32 (2e-5 of the signal's scale from float64, far below
        # 0.001 LU) with its state carried from block to block.
        stages = list(Meter(self.rate)._filters.values())
        self._sos = np.vstack([
            np.concatenate([np.asarray(st.b, np.float64), np.asarray(st.a, np.float64)]) / float(st.a[0])
            for st in stages
        ]).astype(np.float32)  # (2, 6)
        self._zi = np.zeros((len(stages), 2), np.float32)
        self._step = int(round(0.1 * self.rate))  # samples per 100 ms sub-block
        self._sub: list[float] = []  # sum of squares of each complete sub-block
        self._partial_sum = 0.0
        self._partial_n = 0
        self.n = 0

    def push(self, block: np.ndarray) -> None:
        """Add the next (n,) block of samples."""
        from scipy.signal import sosfilt

        y, self._zi = sosfilt(self._sos, np.asarray(block, dtype=np.float32), zi=self._zi)
        self.n += y.size
        sq = np.square(y, dtype=np.float64)
        i = 0
        if self._partial_n:
            take = min(self._step - self._partial_n, sq.size)
            self._partial_sum += float(sq[:take].sum())
            self._partial_n += take
            i = take
            if self._partial_n == self._step:
                self._sub.append(self._partial_sum)
                self._partial_sum, self._partial_n = 0.0, 0
        whole = (sq.size - i) // self._step
        if whole:
            self._sub.extend(sq[i : i + whole * self._step].reshape(whole, self._step).sum(axis=1).tolist())
            i += whole * self._step
        if i < sq.size:
            self._partial_sum += float(sq[i:].sum())
            self._partial_n += sq.size - i

    def lufs(self) -> float:
        """Integrated loudness in LUFS; ``-inf`` for silence (see the module notes)."""
        sub = np.asarray(self._sub, dtype=np.float64)
        if sub.size < 4:
            # Shorter than one gating block: the whole clip is the block.
            total = float(sub.sum()) + self._partial_sum
            z = np.array([total / max(self.n, 1)])
        else:
            # 400 ms blocks with 75% overlap: four consecutive sub-blocks.
            blocks = sub[:-3] + sub[1:-2] + sub[2:-1] + sub[3:]
            z = blocks / (4 * self._step)
        with np.errstate(divide="ignore"):
            loud = -0.691 + 10.0 * np.log10(z)
        kept = z[loud >= ABSOLUTE_GATE]
        if kept.size == 0:
            return -math.inf
        relative = -0.691 + 10.0 * math.log10(kept.mean()) - RELATIVE_GATE
        kept = z[(loud > relative) & (loud > ABSOLUTE_GATE)]
        if kept.size == 0:
            return -math.inf
        return -0.691 + 10.0 * math.log10(kept.mean())


def integrated_loudness(wave: np.ndarray, rate: int) -> float:
    """Integrated loudness of a whole mono signal, in LUFS (``-inf`` for silence)."""
    meter = LoudnessMeter(rate)
    meter.push(wave)
    return meter.lufs()


def alignment_gain_db(lufs: float, target: float) -> float:
    """The gain that brings a clip at ``lufs`` to ``target`` (0 dB for silence)."""
    return 0.0 if not math.isfinite(lufs) else float(target - lufs)
