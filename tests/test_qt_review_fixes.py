"""The matrix's Selected clips scope, the Evaluation tab's cancel and empty chart, the compare
panel's cleared diff and the probe's first look: what a reviewer saw, each held here."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("PySide6.QtWidgets")

pytestmark = pytest.mark.qt

from conftest import BROKEN, import_tree  # noqa: E402


@pytest.fixture
def clip_library(tmp_path, clip_tree):
    """The ``clip_tree`` library plus one file that cannot be decoded (overrides conftest's)."""
    return import_tree(tmp_path, clip_tree, broken=True)


def _clip(window, name):
    return next(c for c in window.library_panel.model.clips() if c.name == name)


def _selection_scope(view):
    from perceptlab.qt.matrix_view import SCOPE_SELECTION

    view.scope_box.setCurrentText(SCOPE_SELECTION)


# -- the matrix's Selected clips ------------------------------------------------------------------------------
def test_selected_clips_leave_out_a_failed_clip_and_draw_the_others(main_window, qtbot):
    view = main_window.matrix_view
    _selection_scope(view)
    main_window.library_panel.table.selectAll()
    assert any(not c.ok for c in main_window.library_panel.selected_clips())
    assert len(view.selection) == 9 and view.skipped == 1
    view.compute()
    qtbot.waitUntil(lambda: view.matrix is not None, timeout=60000)
    assert view._task is None
    assert len(view.clips) == 9 and all(c.ok for c in view.clips)
    assert view.stack.currentWidget() is view.graphics
    assert "1 clip that failed to import was left out" in view.status.text()
    assert "was not imported" not in view.status.text()


def test_a_failed_selection_computation_says_why_and_stops_computing(main_window, qtbot, monkeypatch):
    import perceptlab.qt.analysis_state as state

    def broken(*args, **kwargs):
        raise ValueError("the spectrogram cache is unreadable")

    monkeypatch.setattr(state, "_compute_matrix", broken)
    view = main_window.matrix_view
    _selection_scope(view)
    view.set_selection([_clip(main_window, n) for n in ("low_0.wav", "mid_0.wav", "high_0.wav")])
    view.compute()
    qtbot.waitUntil(lambda: view._task is None, timeout=30000)
    qtbot.wait(50)
    assert view.stack.currentWidget() is view.empty
    assert "the spectrogram cache is unreadable" in view.empty.text()
    assert "Computing" not in view.empty.text()
    assert "the spectrogram cache is unreadable" in view.status.text()


def test_one_selected_row_is_counted_and_its_hint_survives_compute(main_window, qtbot):
    view = main_window.matrix_view
    panel = main_window.library_panel
    panel.table.selectAll()
    assert len(view.selection) == 9
    assert panel.select_clip(_clip(main_window, "low_0.wav").id)  # narrowed to one row
    assert [c.name for c in view.selection] == ["low_0.wav"]
    _selection_scope(view)
    assert view.empty.text().startswith("1 clip selected. Select at least 2")
    view.compute()
    assert view.status.text().startswith("1 clip selected. Select at least 2"), view.status.text()
    assert view.empty.text().startswith("1 clip selected")
    assert view._task is None


def test_the_rank_agreement_table_is_of_the_scope_shown(main_window, qtbot):
    from perceptlab.qt.matrix_view import SCOPE_LIBRARY

    view = main_window.matrix_view
    view.compute()  # the whole library
    qtbot.waitUntil(lambda: view.matrix is not None and view.corr_table.rowCount() == len(view.metric_names),
                    timeout=120000)
    _selection_scope(view)  # nothing computed for it
    assert view.corr_table.rowCount() == 0 and view.correlations == {}
    view.scope_box.setCurrentText(SCOPE_LIBRARY)
    qtbot.waitUntil(lambda: view.corr_table.rowCount() == len(view.metric_names), timeout=60000)


# -- the Evaluation tab -----------------------------------------------------------------------------------------
@pytest.fixture
def evaluation_view(qtbot, clip_library):
    from perceptlab.qt.evaluation_view import QtEvaluationView

    view = QtEvaluationView()
    qtbot.addWidget(view, before_close_func=lambda v: v.process is not None and v.process.kill())
    view.resize(1280, 800)
    view.show()
    qtbot.waitExposed(view)
    view.set_library(str(clip_library))
    return view


def _sleeper(view, monkeypatch, ignore_term: bool):
    """A stand-in for ``perceptlab evaluate`` that runs until it is stopped (or killed)."""
    code = ("import signal, time\n"
            + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
            + "print('started', flush=True)\ntime.sleep(60)\n")
    monkeypatch.setattr(view, "arguments", lambda extra=None: ["-c", code])


def test_cancel_says_cancelled_not_an_exit_status(evaluation_view, qtbot, monkeypatch):
    view = evaluation_view
    _sleeper(view, monkeypatch, ignore_term=False)
    assert view.run()
    qtbot.waitUntil(lambda: "started" in view.log.toPlainText(), timeout=20000)
    view.cancel()
    qtbot.waitUntil(lambda: not view.busy(), timeout=10000)
    qtbot.wait(50)
    assert view.status.text() == "Evaluation cancelled"
    assert view.run_button.isEnabled() and not view.cancel_button.isEnabled()


def test_cancel_does_not_block_and_kills_a_process_that_ignores_it(evaluation_view, qtbot, monkeypatch):
    view = evaluation_view
    view.CANCEL_KILL_MS = 1500
    _sleeper(view, monkeypatch, ignore_term=True)
    assert view.run()
    qtbot.waitUntil(lambda: "started" in view.log.toPlainText(), timeout=20000)
    t0 = time.monotonic()
    view.cancel()
    assert time.monotonic() - t0 < 0.5  # the GUI thread is not held while the process stops
    assert view.busy()
    qtbot.waitUntil(lambda: not view.busy(), timeout=10000)
    assert time.monotonic() - t0 >= 1.0  # killed after the timeout, not at once
    qtbot.wait(50)
    assert view.status.text() == "Evaluation cancelled"


# -- the compare panel ------------------------------------------------------------------------------------------
def test_a_cleared_pair_resets_the_diff_colour_bar(main_window, qtbot):
    panel = main_window.compare_panel
    a, b = _clip(main_window, "low_0.wav"), _clip(main_window, "high_2.wav")
    panel.set_pair(a, b)
    qtbot.waitUntil(lambda: panel.result is not None, timeout=30000)
    shown = panel.colorbar.levels()
    assert shown != pytest.approx(panel.EMPTY_LEVELS, abs=1e-6)  # this pair's own dB range
    panel.set_pair(a, _clip(main_window, BROKEN))  # B failed to import: the pair is cleared
    assert panel.result is None and panel.image.image is None
    assert panel.colorbar.levels() == pytest.approx(panel.EMPTY_LEVELS, abs=1e-9)


def test_a_pending_percentile_fits_its_cell_and_says_it_in_full(main_window, qtbot):
    from PySide6.QtCore import Qt

    from perceptlab.qt.compare_panel import PENDING_PERCENTILE

    panel = main_window.compare_panel
    main_window.resize(1280, 800)
    original = main_window.analysis.percentile
    main_window.analysis.percentile = lambda name, value: None  # the library's matrices not yet computed
    try:
        panel.set_pair(_clip(main_window, "low_0.wav"), _clip(main_window, "mid_1.wav"))
        qtbot.waitUntil(lambda: panel.result is not None, timeout=30000)
        qtbot.wait(50)
        table = panel.table
        for row in range(table.rowCount()):
            cell = table.item(row, 2)
            if cell.text() in ("unavailable",):
                continue
            assert cell.text() == PENDING_PERCENTILE
            assert "Computing the library's distribution" in cell.toolTip()
            rect = table.visualItemRect(cell)
            width = table.fontMetrics().horizontalAdvance(cell.text())
            assert width + 8 <= rect.width(), (cell.text(), width, rect.width())
            assert table.viewport().fontMetrics().elidedText(cell.text(), Qt.ElideRight, rect.width() - 8) \
                == cell.text()
    finally:
        main_window.analysis.percentile = original


# -- the metric probe -------------------------------------------------------------------------------------------
def test_the_probe_before_a_run_shows_its_whole_title_and_no_count(main_window, qtbot):
    w = main_window
    w.resize(1280, 800)
    view = w.agreement_view
    probe = view.probe
    w.central_tabs.setCurrentWidget(view)
    view.pages.setCurrentWidget(probe)
    qtbot.wait(100)  # the layout settles
    title = probe.chart_title
    assert title.isVisible() and title.width() > 0
    needed = title.heightForWidth(title.contentsRect().width())
    assert title.contentsRect().height() >= needed, (title.contentsRect().height(), needed)
    # On a row of its own: the page's whole width (beside the Bars box it had a third of it).
    assert title.width() >= title.parentWidget().contentsRect().width() - 2
    assert title.height() >= 2 * title.fontMetrics().lineSpacing()
    assert probe.progress.text() == "" and "measurements" not in probe.progress.text()
    probe.clips_box.setValue(2)
    assert probe.run() is not None
    assert "measurements" in probe.progress.format()
    qtbot.waitUntil(lambda: probe.report is not None and not probe.busy(), timeout=120000)
    assert "measurements, done" in probe.progress.text()


# -- the Evaluation tab's chart and table ------------------------------------------------------------------------
def test_the_empty_evaluation_chart_says_so_instead_of_drawing_axes(evaluation_view, qtbot):
    view = evaluation_view
    qtbot.wait(50)
    assert not view.chart.isVisible()  # no upside-down 0..1 axes with a grid of nothing
    assert view.chart_empty.isVisible()
    assert "Run evaluation" in view.chart_empty.text()


def test_the_report_fills_the_chart_and_every_header_fits_at_1280(main_window, qtbot, one_torch_thread):
    from PySide6.QtCore import Qt

    from perceptlab.analysis.evaluate import EvaluateConfig, run_evaluation

    cfg = EvaluateConfig(metrics=("mse",), folds=3, segment_frames=32, segment_hop=16, k=3, k_grid=(1, 3),
                         c_grid=(1.0,), bootstrap=200)
    report = run_evaluation(main_window.library.path, cfg)
    w = main_window
    w.resize(1280, 800)
    view = w.evaluation_view
    w.central_tabs.setCurrentWidget(view)
    # A desktop with large fonts: the header's words are wider than a default section.
    font = view.table.font()
    font.setPointSizeF(font.pointSizeF() * 1.6)
    view.table.setFont(font)
    view.table.horizontalHeader().setFont(font)
    view.show_report(report)
    qtbot.wait(100)  # the layout settles
    table, header = view.table, view.table.horizontalHeader()
    assert table.viewport().width() < 1280  # beside the docks
    for col in range(table.columnCount()):
        text = table.horizontalHeaderItem(col).text()
        room = header.sectionSize(col) - 12  # the header's margins
        assert header.fontMetrics().horizontalAdvance(text) <= room, (text, header.sectionSize(col))
        assert header.fontMetrics().elidedText(text, Qt.ElideRight, room) == text
    last = header.sectionViewportPosition(table.columnCount() - 1) + header.sectionSize(table.columnCount() - 1)
    assert last <= table.viewport().width() + 1 or table.horizontalScrollBar().maximum() > 0
    assert view.chart.isVisible() and not view.chart_empty.isVisible()
    view.clear_chart()
    assert not view.chart.isVisible() and view.chart_empty.isVisible()
