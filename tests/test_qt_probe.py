"""The probe view: runs the probe in the background, draws bars and fills a row per metric."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")
pytestmark = [pytest.mark.qt, pytest.mark.usefixtures("one_torch_thread")]

from perceptlab.qt.agreement_view import QtAgreementView  # noqa: E402
from perceptlab.qt.probe_view import QtProbeView  # noqa: E402
from perceptlab.qt.workers import QtTaskRunner  # noqa: E402


@pytest.fixture
def runner():
    r = QtTaskRunner()
    yield r
    assert r.shutdown(60000)


def test_probe_view_runs_and_shows_a_row_per_metric(qtbot, clip_library, runner):
    view = QtProbeView(runner)
    qtbot.addWidget(view)
    view.resize(1100, 700)
    view.show()
    view.set_library(str(clip_library))
    view.clips_box.setValue(2)
    task = view.run()
    assert task is not None and not view.run_button.isEnabled() and view.cancel_button.isEnabled()
    assert view.run() is None  # one at a time
    qtbot.waitUntil(lambda: view.report is not None, timeout=120000)
    rep = view.report
    metrics = rep["metrics"]
    assert metrics == ["mse", "nlpd", "msssim", "logmel-stats", "mfcc-stats"]
    assert view.table.rowCount() == len(metrics)
    assert [view.table.item(i, 1).text().split(" ")[0] for i in range(len(metrics))] == rep["ranking"]
    assert view.table.columnCount() == 4 + len(rep["variants"]["near"]) + len(rep["variants"]["far"])
    assert rep["headline"] in view.status.text().replace("&amp;", "&")
    # Bars and whiskers for every metric, a legend entry each, and the chance line.
    items = view.chart.getPlotItem().items
    assert sum(type(i).__name__ == "BarGraphItem" for i in items) == len(metrics)
    assert sum(type(i).__name__ == "ErrorBarItem" for i in items) == len(metrics)
    assert view.legend_names == rep["ranking"] and all(m in view.legend.text() for m in metrics)
    ticks = view.chart.getAxis("bottom")._tickLevels[0]
    assert [t[1].replace("\n", " ") for t in ticks] == ["overall"] + [v["name"] for v in rep["variants"]["near"]]
    view.group_box.setCurrentIndex(1)  # by far copy
    ticks = view.chart.getAxis("bottom")._tickLevels[0]
    assert [t[1].replace("\n", " ") for t in ticks] == ["overall"] + [v["name"] for v in rep["variants"]["far"]]
    assert view.legend_names == rep["ranking"]
    assert view.run_button.isEnabled() and not view.cancel_button.isEnabled()
    assert rep["out_dir"] == str((clip_library.parent / "probe-copies").resolve())
    # Progress in its own units: every measurement of every copy.
    n_copies = 2 * (len(rep["variants"]["near"]) + len(rep["variants"]["far"]))
    assert view.progress.maximum() == view.progress.value() == n_copies * 3  # images, then 2 baselines
    assert "measurements" in view.progress.format()
    view.close()


def test_probe_view_cancel_and_errors(qtbot, tmp_path, clip_library, runner):
    view = QtProbeView(runner)
    qtbot.addWidget(view)
    assert view.run() is None  # no library yet
    view.set_library(str(clip_library))
    view.clips_box.setValue(9)
    task = view.run()
    view.cancel()
    qtbot.waitUntil(lambda: view._task is None, timeout=120000)
    assert task.is_cancelled
    assert view.report is None and "cancelled" in view.status.text().lower()
    assert view.run_button.isEnabled()
    # A library that is not there: the reason, not a dialog.
    view.set_library(str(tmp_path / "sub" / "missing.sqlite"))
    view.run()
    qtbot.waitUntil(lambda: view._task is None, timeout=60000)
    assert view.status.text().startswith("Cannot run the probe:") and "no such library" in view.status.text()
    assert not (tmp_path / "sub").exists()
    view.close()


def test_agreement_tab_holds_the_probe(qtbot, clip_library, runner):
    view = QtAgreementView(runner)
    qtbot.addWidget(view)
    view.set_library(str(clip_library))
    assert [view.pages.tabText(i) for i in range(view.pages.count())] == ["Listeners", "Metric probe"]
    assert view.pages.widget(1) is view.probe and view.probe.library_path == str(clip_library)
    view.close()


def _scroll_area(widget):
    from PySide6.QtWidgets import QScrollArea

    w = widget.parentWidget()
    while w is not None and not isinstance(w, QScrollArea):
        w = w.parentWidget()
    return w


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)])
def test_probe_page_fits_the_main_window(qtbot, main_window, size):
    """Beside the default docks the page gets about 530 px at 1280 x 800: it must not scroll
    sideways, and the ranked table shows every metric's row under a chart of capped height."""
    w = main_window
    w.resize(*size)
    view = w.agreement_view
    probe = view.probe
    w.central_tabs.setCurrentWidget(view)
    view.pages.setCurrentWidget(probe)
    probe.clips_box.setValue(2)
    probe.seed_box.setValue(0)
    assert probe.run() is not None
    qtbot.waitUntil(lambda: probe.report is not None and not probe.busy(), timeout=120000)
    qtbot.wait(100)  # the layout settles
    area = _scroll_area(view)
    room = area.viewport().width()
    assert room > 300  # what the page gets beside the docks (about 530 px at 1280 x 800)
    assert probe.minimumSizeHint().width() <= room, (probe.minimumSizeHint(), room)
    assert area.horizontalScrollBar().maximum() == 0
    # Every label wraps inside the page: nothing runs past its right edge.
    for label in (probe.status, probe.chart_title, probe.legend):
        assert label.geometry().right() <= probe.width()
    table = probe.table
    n = table.rowCount()
    assert n == len(probe.report["ranking"]) == 5
    last = table.rowViewportPosition(n - 1) + table.rowHeight(n - 1)
    assert 0 < last <= table.viewport().height(), "the table hides some of its rows"
    assert 160 <= probe.chart.height() <= 480
    ticks = probe.chart.getAxis("bottom")._tickLevels[0]
    assert [t[1].replace("\n", " ") for t in ticks] == ["overall"] + [v["name"] for v in probe.report["variants"]["near"]]


def test_probe_page_does_not_scroll_down_at_1280_by_800(qtbot, main_window):
    w = main_window
    w.resize(1280, 800)
    view = w.agreement_view
    w.central_tabs.setCurrentWidget(view)
    view.pages.setCurrentWidget(view.probe)
    qtbot.wait(100)
    area = _scroll_area(view)
    assert area.verticalScrollBar().maximum() == 0, (view.height(), area.viewport().height())
