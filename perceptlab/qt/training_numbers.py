"""The numbers of the training curves: smoothing, envelope, y range, readout and progress texts.

Plain functions of the logged losses and the run's JSON-lines events, no Qt,
so tests check them without a widget; :mod:`perceptlab.qt.training_curves`
draws with them and :mod:`perceptlab.qt.training_panel` shows the progress
line. The constants are the plot's: :data:`SMOOTH` (EMA factor),
:data:`ENVELOPE` (steps of the min/max band), :data:`LOG_DECADES` (when "auto"
turns the y axis log), :data:`PERCENTILES` and :data:`MARGIN` (the robust y
range).
"""

from __future__ import annotations

import math

import numpy as np

SMOOTH = 0.9  # EMA factor of the smoothed curve
ENVELOPE = 10  # steps in the min/max envelope window
LOG_DECADES = 1.5  # "auto" scale turns log when the shown losses span this many decades
PERCENTILES = (1.0, 99.0)  # the part of the shown losses the y range covers
MARGIN = 0.08  # of the covered span, added above and below


def rolling_envelope(values, window: int = ENVELOPE) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of the last ``window`` values at each position (fewer at the start)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return v.copy(), v.copy()
    # Padding with the first value changes no minimum or maximum: it is in every early window.
    padded = np.concatenate([np.full(window - 1, v[0]), v])
    windows = np.lib.stride_tricks.sliding_window_view(padded, window)  # (n, window)
    return windows.min(axis=1), windows.max(axis=1)


def _finite(values, positive: bool = False) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    keep = np.isfinite(v) & (v > 0) if positive else np.isfinite(v)
    return v[keep]


def decades(values) -> float:
    """How many decades the robust span (1st to 99th percentile) of the positive values covers."""
    v = _finite(values, positive=True)
    if v.size < 2:
        return 0.0
    lo, hi = np.percentile(v, PERCENTILES)
    return float(math.log10(hi / lo)) if lo > 0 else 0.0


def robust_range(values, log: bool = False, percentiles=PERCENTILES, margin: float = MARGIN):
    """The y range that shows ``values`` well: their percentile span plus a margin.

    Parameters
    ----------
    values : array-like
        The losses the plot shows (raw and validation); non-finite
        ones are left out, and so are values <= 0 when ``log``.
    log : bool
        Give the range in log10 units (what a log axis of pyqtgraph takes).

    Returns
    -------
    (low, high) or None when there is nothing to show.
    """
    v = _finite(values, positive=log)
    if v.size == 0:
        return None
    if log:
        v = np.log10(v)
    lo, hi = (float(x) for x in np.percentile(v, percentiles))
    span = hi - lo
    if span <= 0:  # one value, or all equal: a small window around it
        span = 0.1 if log else (abs(hi) * 0.1 or 1.0)
        return lo - span / 2, hi + span / 2
    return lo - margin * span, hi + margin * span


def fmt_duration(seconds) -> str:
    """12:30 for minutes and seconds, 1:02:30 from an hour on; ? when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def fmt_loss(v) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.4g}"


def progress_text(events: list[dict], status: str) -> str:
    """One line of where a run stands, with units.

    "epoch 3 / 15 · step 1,240 / 6,200 · 12:30 left" while it runs; the
    end ("done in 4:10", "cancelled", "failed") once it stopped. Empty when the
    run has not started.
    """
    start = step = done = loading = None
    for ev in reversed(events):
        kind = ev.get("event")
        if kind == "start" and start is None:
            start = ev
        elif kind == "step" and step is None and start is None:
            step = ev  # the latest step of the latest start
        elif kind == "done" and done is None and start is None:
            done = ev
        elif kind == "loading" and loading is None and start is None:
            loading = ev
        if start is not None:
            break
    if start is None:
        if loading is not None and status == "running":
            return f"loading clips {loading.get('done', 0):,} / {loading.get('total', 0):,}"
        return ""
    total_epochs = (start.get("config") or {}).get("epochs")
    total_steps = start.get("total_steps")
    if step is not None:
        epoch, at = step.get("epoch"), step.get("step")
    else:  # started (or resumed) but no step yet
        epoch, at = start.get("epoch", 0), start.get("step", 0)
    if done is not None:  # early stopping ends before the last epoch
        epoch, at = done.get("epochs", epoch), done.get("step", at)

    def of(a, b):
        a_text = f"{a:,}" if isinstance(a, int) else str(a if a is not None else "?")
        return a_text + (f" / {b:,}" if isinstance(b, int) else "")

    parts = [f"epoch {of(epoch, total_epochs)}", f"step {of(at, total_steps)}"]
    if status == "running":
        eta = step.get("eta_s") if step is not None else None
        parts.append(f"{fmt_duration(eta)} left" if eta is not None else "estimating time left")
    elif status == "completed":
        parts.append(f"done in {fmt_duration(done.get('elapsed_s'))}" if done else "done")
        if done and done.get("stopped"):
            parts.append("stopped early")
    elif status in ("cancelled", "failed"):
        parts.append(status)
    return " · ".join(parts)


def progress_fraction(events: list[dict]) -> float | None:
    """Steps done over total steps of the latest start, or None before it."""
    start = next((ev for ev in reversed(events) if ev.get("event") == "start"), None)
    if start is None or not start.get("total_steps"):
        return None
    step = next((ev for ev in reversed(events) if ev.get("event") in ("step", "done")), None)
    at = step.get("step", 0) if step is not None else start.get("step", 0)
    return max(0.0, min(1.0, at / start["total_steps"]))
