"""The Evaluation tab's chart: pyqtgraph bars and whiskers drawn from the report's own numbers."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6.QtWidgets")

pytestmark = pytest.mark.qt


@pytest.fixture
def report(clip_library, one_torch_thread):
    """A real report (k-NN on MSE and the baselines) on the 3 x 3 clip library."""
    from perceptlab.analysis.evaluate import EvaluateConfig, run_evaluation

    cfg = EvaluateConfig(metrics=("mse",), folds=3, segment_frames=32, segment_hop=16, k=3, k_grid=(1, 3),
                         c_grid=(1.0,), bootstrap=200)
    return run_evaluation(clip_library, cfg)


def test_chart_bars_and_whiskers_are_the_report_numbers(qtbot, report):
    import pyqtgraph as pg

    from perceptlab.analysis.evaluate import EvaluationReport
    from perceptlab.analysis.evaluate.chart import KIND_COLORS
    from perceptlab.qt.evaluation_view import QtEvaluationView

    view = QtEvaluationView()
    qtbot.addWidget(view)
    view.resize(1280, 800)
    view.show_report(report)
    methods = report.methods  # best first
    assert len(methods) >= 4
    mean = [m["clip"]["f1_weighted"]["mean"] for m in methods]
    std = [m["clip"]["f1_weighted"]["std"] for m in methods]
    bars, whiskers = view.bars.opts, view.whiskers.opts
    assert np.asarray(bars["width"]) == pytest.approx(mean, abs=1e-12)
    assert np.asarray(bars["x0"]) == pytest.approx(np.zeros(len(methods)))
    assert np.asarray(bars["y"]) == pytest.approx(np.arange(len(methods)))
    assert [b.color().getRgb()[:3] for b in bars["brushes"]] == [KIND_COLORS[m["kind"]] for m in methods]
    assert np.asarray(whiskers["x"]) == pytest.approx(mean, abs=1e-12)
    assert np.asarray(whiskers["left"]) == pytest.approx(std, abs=1e-12)
    assert np.asarray(whiskers["right"]) == pytest.approx(std, abs=1e-12)
    assert np.asarray(whiskers["y"]) == pytest.approx(np.arange(len(methods)))
    assert [label.toPlainText() for label in view.value_labels] == [f"{v:.3f}" for v in mean]
    # the axis names the bars in the table's order, best on top
    ticks = view.chart.getAxis("left")._tickLevels[0]
    assert [name for _, name in ticks] == [m["name"] for m in methods]
    assert [view.table.item(i, 1).text() for i in range(view.table.rowCount())] == [m["name"] for m in methods]
    assert view.chart.getViewBox().yInverted()
    assert "3 folds" in view.chart.getPlotItem().titleLabel.text

    # Another report replaces the chart: no bar of the first one stays behind.
    data = report.to_json()
    data["methods"] = [dict(m, rank=i + 1) for i, m in enumerate(methods[:2])]
    view.show_report(EvaluationReport.from_json(data))
    items = view.chart.getPlotItem().items
    assert sum(isinstance(i, pg.BarGraphItem) for i in items) == 1
    assert sum(isinstance(i, pg.ErrorBarItem) for i in items) == 1
    assert sum(isinstance(i, pg.TextItem) for i in items) == 2
    assert np.asarray(view.bars.opts["width"]) == pytest.approx(mean[:2], abs=1e-12)
