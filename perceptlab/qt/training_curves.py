"""Training curves a user can read: the loss plot of the training panel.

Each run contributes four curves, all in the run's colour (the run list shows
the same colour): the raw training loss of every logged step (faint), its
exponential moving average (solid), the min/max envelope of the last
:data:`ENVELOPE` steps (a band) and the validation loss at the end of each
epoch (dashed, dots). A legend above the plot names the four.

The y range is fitted to what is shown, robustly: the 1st to 99th percentile
of the visible runs' raw and validation losses plus a small margin, so one early spike neither
flattens the curve nor does the range start at 0 when the losses sit at 0.8.
"Auto" scale switches to a log axis when those losses span more than
:data:`LOG_DECADES` decades. Moving the mouse over the plot shows a crosshair
and a readout at the cursor (step, epoch, loss, smoothed loss, validation).
Before the first step there are no axes at all, only a line saying what the
plot is waiting for.

The numbers (smoothing, envelope, ranges, readout and progress texts) are
plain functions in :mod:`perceptlab.qt.training_numbers`, so tests check them
without a widget.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPoint, QPointF, QRect, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLayout,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from perceptlab.qt.training_numbers import (
    ENVELOPE,
    LOG_DECADES,
    SMOOTH,
    decades,
    fmt_loss,
    robust_range,
    rolling_envelope,
)

#: The legend: (key, text, tooltip), in the order the entries are shown.
LEGEND = (
    ("raw", "raw loss", "the training loss of every logged step; for a run with view agreement, the "
     "reconstruction loss alone (without the agreement term or its scaling), as validation reports it"),
    ("smoothed", "smoothed (EMA)", f"exponential moving average of the raw loss (factor {SMOOTH:g})"),
    ("envelope", f"envelope: min–max of {ENVELOPE} steps",
     f"the band between the lowest and the highest raw loss of the last {ENVELOPE} logged steps: "
     "how noisy the steps are"),
    ("validation", "validation, per epoch", "the loss on the held-out validation patches, at the end of each epoch"),
)

WAITING = "Waiting for the first training step…"
NO_RUN = "Start a training run to see its curves"

SCALES = {"auto": "Auto y", "linear": "Linear y", "log": "Log y"}


# -- one run's curves ------------------------------------------------------------------------
class RunCurves:
    """The plot items and the numbers of one run."""

    def __init__(self, plot: pg.PlotItem, name: str, colour):
        self.name = name
        c = pg.mkColor(*colour)
        self.colour = c
        self.raw = plot.plot([], [], pen=pg.mkPen(pg.mkColor(*colour, 80), width=1))
        # The envelope's edges are not on the plot: only the band between them is. They need a
        # pen, if an invisible one: without any, pyqtgraph builds no path and the band is empty.
        self.lo = pg.PlotDataItem([], [], pen=pg.mkPen(None))
        self.hi = pg.PlotDataItem([], [], pen=pg.mkPen(None))
        self.band = pg.FillBetweenItem(self.lo, self.hi, brush=pg.mkBrush(*colour, 45))
        plot.addItem(self.band)
        self.smooth = plot.plot([], [], pen=pg.mkPen(c, width=2))
        self.val = plot.plot([], [], pen=pg.mkPen(c, width=2, style=Qt.DashLine), symbol="o", symbolSize=7,
                             symbolBrush=c, symbolPen=pg.mkPen("w", width=1))
        self.items = [self.raw, self.band, self.smooth, self.val, self.lo, self.hi]
        self.visible = True
        self.steps: list[int] = []
        self.epochs: list[int] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self.val_steps: list[int] = []
        self.val_losses: list[float] = []
        self.val_epochs: list[int] = []
        self._acc: float | None = None

    def add_event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "step" and ev.get("train_loss") is not None:
            # The reconstruction loss alone where the run reports it (view agreement on):
            # the quantity validation measures, so the two curves compare like with like.
            loss = float(ev["recon_loss"] if ev.get("recon_loss") is not None else ev["train_loss"])
            self.steps.append(int(ev["step"]))
            self.epochs.append(int(ev.get("epoch") or 0))
            self.losses.append(loss)
            self._acc = loss if self._acc is None else SMOOTH * self._acc + (1 - SMOOTH) * loss
            self.smoothed.append(self._acc)
        elif kind == "epoch" and ev.get("val_loss") is not None:
            self.val_steps.append(int(ev["step"]))
            self.val_losses.append(float(ev["val_loss"]))
            self.val_epochs.append(int(ev.get("epoch") or 0))

    def redraw(self) -> None:
        if self.steps:
            lo, hi = rolling_envelope(self.losses)
            self.raw.setData(self.steps, self.losses)
            self.smooth.setData(self.steps, self.smoothed)
            self.lo.setData(self.steps, lo)
            self.hi.setData(self.steps, hi)
        self.val.setData(self.val_steps, self.val_losses)

    def set_visible(self, on: bool) -> None:
        self.visible = on
        for it in self.items:
            it.setVisible(on)

    def set_log(self, on: bool) -> None:
        # lo and hi are not the plot's items, so the plot's log mode does not reach them.
        self.lo.setLogMode(False, on)
        self.hi.setLogMode(False, on)

    def shown_values(self) -> np.ndarray:
        # The measured losses; the smoothed curve lies between them, except right after a wild
        # first step, which it would otherwise drag into the range for dozens of steps.
        return np.asarray(self.losses + self.val_losses, dtype=float)

    def nearest(self, x: float) -> int | None:
        """Index of the logged step nearest to ``x``; None when x is off this run's steps."""
        if not self.steps:
            return None
        steps = np.asarray(self.steps)
        gap = float(np.median(np.diff(steps))) if len(steps) > 1 else 1.0
        if x < steps[0] - gap or x > steps[-1] + gap:
            return None
        return int(np.argmin(np.abs(steps - x)))

    def readout(self, i: int) -> str:
        """"step 1,240 · epoch 3 · loss 0.0123 (smoothed 0.0131) · val 0.0140" for step index ``i``.

        The validation part is that epoch's validation loss, once the epoch has ended.
        """
        epoch = self.epochs[i]
        text = (f"step {self.steps[i]:,} · epoch {epoch} · loss {fmt_loss(self.losses[i])} "
                f"(smoothed {fmt_loss(self.smoothed[i])})")
        if epoch in self.val_epochs:
            text += f" · val {fmt_loss(self.val_losses[len(self.val_epochs) - 1 - self.val_epochs[::-1].index(epoch)])}"
        return text


# -- the legend ---------------------------------------------------------------------------
def _sample_pixmap(key: str, w: int = 34, h: int = 16) -> QPixmap:
    """A small picture of how a curve kind is drawn, on the plot's background."""
    pm = QPixmap(w, h)
    pm.fill(QColor(0, 0, 0))
    p = QPainter(pm)
    p.setRenderHint(QPainter.Antialiasing)
    grey = QColor(220, 220, 220)
    mid = h / 2
    if key == "raw":
        faint = QColor(grey)
        faint.setAlpha(120)
        p.setPen(QPen(faint, 1))
        pts = [QPointF(2 + i * (w - 4) / 8, mid + (4 if i % 2 else -4) * (0.5 + (i % 3) / 3)) for i in range(9)]
        p.drawPolyline(pts)
    elif key == "smoothed":
        p.setPen(QPen(grey, 2))
        p.drawLine(QPointF(2, mid), QPointF(w - 2, mid))
    elif key == "envelope":
        band = QColor(grey)
        band.setAlpha(70)
        p.fillRect(QRectF(2, mid - 5, w - 4, 10), band)
    elif key == "validation":
        pen = QPen(grey, 2)
        pen.setStyle(Qt.DashLine)
        p.setPen(pen)
        p.drawLine(QPointF(2, mid), QPointF(w - 2, mid))
        p.setBrush(grey)
        p.setPen(QPen(QColor(255, 255, 255), 1))
        p.drawEllipse(QPointF(w / 2, mid), 3.5, 3.5)
    p.end()
    return pm


class _FlowLayout(QLayout):
    """Items left to right, wrapping to a new row when the width runs out (Qt's flow layout example).

    The legend and the scale controls share one row on a wide panel and wrap
    on a narrow one, so the legend never sets the panel's minimum width.
    """

    def __init__(self, parent=None, spacing: int = 12, row_spacing: int = 2):
        super().__init__(parent)
        self._items = []
        self._spacing = spacing
        self._row_spacing = row_spacing
        self.setContentsMargins(0, 0, 0, 0)

    def addItem(self, item):  # noqa: N802 - Qt's name
        self._items.append(item)

    def count(self):
        return len(self._items)

    def itemAt(self, i):  # noqa: N802
        return self._items[i] if 0 <= i < len(self._items) else None

    def takeAt(self, i):  # noqa: N802
        return self._items.pop(i) if 0 <= i < len(self._items) else None

    def expandingDirections(self):  # noqa: N802
        return Qt.Orientation(0)

    def hasHeightForWidth(self):  # noqa: N802
        return True

    def heightForWidth(self, width):  # noqa: N802
        return self._arrange(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect):  # noqa: N802
        super().setGeometry(rect)
        self._arrange(rect, move=True)

    def sizeHint(self):  # noqa: N802
        return self.minimumSize()

    def minimumSize(self):  # noqa: N802
        size = QSize()
        for item in self._items:
            size = size.expandedTo(item.minimumSize())
        return size

    def _arrange(self, rect: QRect, move: bool) -> int:
        x, y, row_h = rect.x(), rect.y(), 0
        for item in self._items:
            hint = item.sizeHint()
            if x + hint.width() > rect.right() + 1 and row_h > 0:  # wrap
                x, y = rect.x(), y + row_h + self._row_spacing
                row_h = 0
            if move:
                item.setGeometry(QRect(QPoint(x, y), hint))
            x += hint.width() + self._spacing
            row_h = max(row_h, hint.height())
        return y + row_h - rect.y()


class _LeaveFilter(QObject):
    def __init__(self, on_leave, parent=None):
        super().__init__(parent)
        self._on_leave = on_leave

    def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
        if event.type() == QEvent.Leave:
            self._on_leave()
        return False


# -- the plot -------------------------------------------------------------------------------
class QtLossPlot(QWidget):
    """The loss curves of the runs that are ticked, or a line saying why there are none."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.runs: list[RunCurves] = []
        self.readout = ""  # the hover text now shown ("" when none)
        self._hover: tuple[float, float | None] | None = None  # where the readout is, to re-place it
        self._fit = True  # fit y to the data on every change, until the user zooms or pans
        self._log = False

        # -- empty state
        self.message = QLabel(NO_RUN)
        self.message.setAlignment(Qt.AlignCenter)
        self.message.setWordWrap(True)
        self.message.setStyleSheet("QLabel { color: #5a5a5a; font-size: 15px; background: #f7f7f7;"
                                   " border: 1px solid #c8c8c8; }")

        # -- legend and scale
        top = _FlowLayout()
        self.legend_labels: dict[str, QLabel] = {}
        for key, text, tip in LEGEND:
            entry = QWidget()
            el = QHBoxLayout(entry)
            el.setContentsMargins(0, 0, 0, 0)
            el.setSpacing(5)
            icon = QLabel()
            icon.setPixmap(_sample_pixmap(key))
            label = QLabel(text)
            for w in (entry, icon, label):
                w.setToolTip(tip)
            el.addWidget(icon)
            el.addWidget(label)
            self.legend_labels[key] = label
            top.addWidget(entry)
        self.scale_box = QComboBox()
        for key, text in SCALES.items():
            self.scale_box.addItem(text, key)
        self.scale_box.setToolTip(f"Y axis scale. Auto: logarithmic when the shown losses span more than "
                                  f"{LOG_DECADES:g} decades, linear otherwise")
        self.fit_button = QPushButton("Fit")
        self.fit_button.setToolTip("Fit the axes to the shown losses again (after zooming or panning)")
        self.fit_button.setEnabled(False)
        controls = QWidget()
        cl = QHBoxLayout(controls)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(4)
        cl.addWidget(self.scale_box)
        cl.addWidget(self.fit_button)
        top.addWidget(controls)

        self.plot_widget = pg.PlotWidget()
        self.plot = self.plot_widget.getPlotItem()
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "loss")
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        for side in ("left", "bottom"):
            self.plot.getAxis(side).enableAutoSIPrefix(False)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()  # the Fit button does what pyqtgraph's "A" did
        self.plot.vb.setMouseEnabled(x=True, y=True)

        # -- crosshair and readout
        cross = pg.mkPen(200, 200, 200, 150, width=1, style=Qt.DashLine)
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=cross)
        self.hline = pg.InfiniteLine(angle=0, movable=False, pen=cross)
        self.marker = pg.ScatterPlotItem(size=9, pen=pg.mkPen("w", width=1.5), brush=None)
        self.text = pg.TextItem("", color=(235, 235, 235), fill=pg.mkBrush(20, 20, 20, 225),
                                border=pg.mkPen(120, 120, 120))
        self.text.setZValue(100)
        for it in (self.vline, self.hline, self.marker, self.text):
            self.plot.addItem(it, ignoreBounds=True)
            it.hide()

        plot_page = QWidget()
        pl = QVBoxLayout(plot_page)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.setSpacing(2)
        pl.addLayout(top)
        pl.addWidget(self.plot_widget, 1)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.message)
        self.stack.addWidget(plot_page)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.stack)

        self.scale_box.currentIndexChanged.connect(lambda *_: self.refresh())
        self.fit_button.clicked.connect(self._on_fit_clicked)
        self.plot.vb.sigRangeChangedManually.connect(self._on_range_changed_manually)
        self.plot.vb.sigRangeChanged.connect(self._on_range_changed)
        self.plot_widget.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self._leave = _LeaveFilter(self.clear_hover, self)
        self.plot_widget.installEventFilter(self._leave)

    # -- runs ------------------------------------------------------------------------------
    def add_run(self, name: str, colour) -> RunCurves:
        run = RunCurves(self.plot, name, colour)
        run.set_log(self._log)
        self.runs.append(run)
        return run

    def shown_runs(self) -> list[RunCurves]:
        return [r for r in self.runs if r.visible and (r.steps or r.val_steps)]

    def legend_entries(self) -> list[str]:
        return [self.legend_labels[key].text() for key, _text, _tip in LEGEND]

    def is_empty(self) -> bool:
        return self.stack.currentWidget() is self.message

    def show_message(self, text: str) -> None:
        """The empty state: no axes, one line saying what the plot waits for."""
        self.message.setText(text)
        self.clear_hover()
        self.stack.setCurrentWidget(self.message)

    # -- scale and range -----------------------------------------------------------------
    def scale(self) -> str:
        return self.scale_box.currentData()

    def set_scale(self, key: str) -> None:
        i = self.scale_box.findData(key)
        if i < 0:
            raise ValueError(f"unknown y scale {key!r}; choose one of {', '.join(SCALES)}")
        self.scale_box.setCurrentIndex(i)

    def is_log(self) -> bool:
        return self._log

    def shown_values(self) -> np.ndarray:
        runs = self.shown_runs()
        return np.concatenate([r.shown_values() for r in runs]) if runs else np.zeros(0)

    def y_range(self) -> tuple[float, float]:
        """The y range on screen in loss units (not log10 units)."""
        lo, hi = self.plot.vb.viewRange()[1]
        return (10 ** lo, 10 ** hi) if self._log else (lo, hi)

    def refresh(self) -> None:
        """Apply the scale and fit the range to the shown runs (after new data or a tick)."""
        if not self.shown_runs():
            return
        self.stack.setCurrentIndex(1)
        values = self.shown_values()
        scale = self.scale()
        log = scale == "log" or (scale == "auto" and values.size > 0 and bool(np.all(values[np.isfinite(values)] > 0))
                                 and decades(values) > LOG_DECADES)
        if log != self._log:
            self._log = log
            self.plot.setLogMode(y=log)
            for r in self.runs:
                r.set_log(log)
            self._fit = True
        self.plot.setLabel("left", "loss (log scale)" if log else "loss")
        if self._fit:
            self._fit_range(values)

    def _fit_range(self, values) -> None:
        rng = robust_range(values, log=self._log)
        if rng is not None:
            self.plot.vb.enableAutoRange(x=True)
            self.plot.setYRange(*rng, padding=0)
            self.plot.vb.enableAutoRange(x=True)

    def _on_range_changed_manually(self, *_):
        self._fit = False
        self.fit_button.setEnabled(True)

    def _on_fit_clicked(self) -> None:
        self._fit = True
        self.fit_button.setEnabled(False)
        self._fit_range(self.shown_values())

    # -- hover ------------------------------------------------------------------------------
    def _on_mouse_moved(self, pos) -> None:
        vb = self.plot.vb
        if not self.shown_runs() or not vb.sceneBoundingRect().contains(pos):
            self.clear_hover()
            return
        p = vb.mapSceneToView(pos)
        self.hover_at(p.x(), p.y())

    def hover_at(self, x: float, y_view: float | None = None) -> str:
        """Show the crosshair and readout at step ``x`` (``y_view``: the cursor in view units).

        Returns the readout: one line per shown run that has a step near x,
        prefixed with the run's name when several runs are shown.
        """
        # The x range follows new steps lazily; bring it up to date so the readout is placed in it.
        self.plot.vb.updateAutoRange()
        runs = self.shown_runs()
        wide, narrow, plain, first = [], [], [], None
        for r in runs:
            i = r.nearest(x)
            if i is None:
                continue
            text = r.readout(i)
            if len(runs) > 1:
                text = f"{r.name}: {text}"
            if first is None:
                first = (r, i)
            plain.append(text)
            # Two short lines, or four shorter ones on a narrow plot: it must fit beside the cursor.
            where, _, losses = text.partition(" · loss ")
            losses, _, val = losses.partition(" · val ")
            loss, _, smoothed = losses.partition(" (smoothed ")
            mark, pad = f"<span style='color:{r.colour.name()}'>■</span>", "<br>&nbsp;&nbsp;&nbsp;"
            wide.append(f"{mark} {where}{pad}loss {losses}" + (f" · val {val}" if val else ""))
            narrow.append(f"{mark} {where}{pad}loss {loss}{pad}smoothed {smoothed.rstrip(')')}"
                          + (f"{pad}val {val}" if val else ""))
        if first is None:
            self.clear_hover()
            return ""
        r, i = first
        step = r.steps[i]
        y = r.smoothed[i]
        yv = math.log10(y) if self._log and y > 0 else y
        self.vline.setPos(step)
        self.hline.setPos(yv)
        self.marker.setData([step], [yv])
        for lines in (wide, narrow):
            self.text.setHtml("<div style='font-size:9pt'>" + "<br>".join(lines) + "</div>")
            if self.text.boundingRect().width() <= 0.45 * self.plot.vb.width():
                break
        self._place_text(step, yv if y_view is None else y_view)
        for it in (self.vline, self.hline, self.marker, self.text):
            it.show()
        self.readout = "\n".join(plain)
        self._hover = (x, y_view)
        return self.readout

    def _place_text(self, x: float, y: float) -> None:
        """Put the readout beside the cursor, right of it if it fits, else left, never outside the plot."""
        vb = self.plot.vb
        (x0, x1), (y0, y1) = vb.viewRange()
        px, py = vb.viewPixelSize()  # view units per screen pixel
        rect = self.text.boundingRect()
        w, h = rect.width() * px, rect.height() * py
        gap = 10 * px
        if x + gap + w <= x1:
            left = x + gap
        elif x - gap - w >= x0:
            left = x - gap - w
        else:
            left = max(x0, x1 - w)
        top = y + 10 * py + h  # above the cursor (view y grows upwards)...
        if top > y1:
            top = y - 10 * py  # ...or below it near the top
        top = min(max(top, y0 + h), y1)
        self.text.setAnchor((0.0, 0.0))
        self.text.setPos(left, top)

    def _on_range_changed(self, *_):
        # New steps widen the x range, a zoom changes both: keep the readout inside the plot.
        if self._hover is not None and self.text.isVisible():
            self._place_text(float(self.vline.value()), self._hover[1] if self._hover[1] is not None
                             else float(self.hline.value()))

    def clear_hover(self) -> None:
        for it in (self.vline, self.hline, self.marker, self.text):
            it.hide()
        self.readout = ""
        self._hover = None
