"""Compare, neighbours and matrix panels, driven as a user would."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli

pytest.importorskip("PySide6.QtWidgets")

from PySide6.QtCore import Qt  # noqa: E402


pytestmark = pytest.mark.qt


@pytest.fixture
def window(main_window):
    return main_window


def _clip(window, name):
    return next(c for c in window.library_panel.model.clips() if c.name == name)


def _cli(*args):
    return json.loads(run_cli(*args).stdout)


def test_compare_panel_shows_each_metric_with_percentiles_and_maps(window, qtbot):
    window.library_panel.select_clip(_clip(window, "low_0.wav").id)
    window.library_panel.table.setFocus()
    qtbot.keyClick(window.library_panel.table, Qt.Key_Down)  # low_1.wav
    window.library_panel.select_clip(_clip(window, "high_1.wav").id)
    qtbot.keyClick(window.library_panel.table, Qt.Key_B, Qt.ShiftModifier)  # high_1 as B
    window.library_panel.select_clip(_clip(window, "low_0.wav").id)
    panel = window.compare_panel
    qtbot.waitUntil(lambda: panel.result is not None and panel.result["a"].name == "low_0.wav", timeout=20000)
    assert "low_0.wav" in panel.title.text() and "high_1.wav" in panel.title.text()
    names = [panel.table.item(r, 0).data(Qt.UserRole) for r in range(panel.table.rowCount())]
    assert names[:3] == ["mse", "nlpd", "msssim"]
    qtbot.waitUntil(lambda: "%" in panel.table.item(1, 2).text(), timeout=20000)
    # Percentile = share of library pairs closer than this pair.
    clips, d = window.analysis.matrix("nlpd")
    off = d[np.triu_indices(len(d), 1)]
    expected = 100 * np.mean(off < panel.values()["nlpd"])
    assert float(panel.table.item(1, 2).text().rstrip(" %")) == pytest.approx(expected, abs=0.06)
    # Each local map has the spectrogram excerpt's shape; switching maps changes the image.
    for i in range(panel.map_box.count()):
        panel.map_box.setCurrentIndex(i)
        assert panel.current_map().shape == (128, 128)
        assert panel.image.image.shape == (128, 128)
    panel.map_box.setCurrentIndex(1)
    assert panel.current_map().max() > 0  # 1 - SSIM of different tones


def test_neighbours_panel_columns_and_click_loads_b(window, qtbot):
    window.library_panel.select_clip(_clip(window, "mid_0.wav").id)
    panel = window.neighbours_panel
    qtbot.waitUntil(lambda: panel.result is not None, timeout=20000)
    headers = [panel.table.horizontalHeaderItem(c).text() for c in range(panel.table.columnCount())]
    assert headers[:3] == ["MSE", "NLPD", "1 - MS-SSIM"]
    assert panel.table.rowCount() == 5
    top = panel.top("nlpd")
    assert len(top) == 5 and "mid_0.wav" not in [n.clip.name for n in top]
    assert [n.distance for n in top] == sorted(n.distance for n in top)
    assert "Kendall" in panel.tau_label.text()
    # Clicking the first NLPD neighbour loads it as B.
    rect = panel.table.visualItemRect(panel.table.item(0, 1))
    qtbot.mouseClick(panel.table.viewport(), Qt.LeftButton, pos=rect.center())
    assert window.slots["B"].id == top[0].clip.id
    # k is adjustable.
    panel.k_box.setValue(3)
    assert panel.table.rowCount() == 3


def test_disagreement_is_highlighted(window, qtbot):
    from perceptlab.qt.neighbours_panel import disagreement_ids

    window.library_panel.select_clip(_clip(window, "mid_0.wav").id)
    panel = window.neighbours_panel
    qtbot.waitUntil(lambda: panel.result is not None, timeout=20000)
    panel.k_box.setValue(1)  # 3k = 3: a neighbour ranked beyond 3rd elsewhere counts
    flagged = {panel.table.item(0, c).data(Qt.UserRole).id for c in range(panel.table.columnCount())
               if panel.table.item(0, c).data(Qt.UserRole + 1)}
    assert flagged == disagreement_ids(panel.result, 1) & {
        panel.table.item(0, c).data(Qt.UserRole).id for c in range(panel.table.columnCount())}


def test_matrix_view_heatmap_sorted_by_label_and_click_sets_pair(window, qtbot):
    view = window.matrix_view
    window.matrix_dock.raise_()
    view.compute()
    qtbot.waitUntil(lambda: view.matrix is not None, timeout=30000)
    labels = [c.label for c in view.clips]
    assert labels == sorted(labels) and len(labels) == 9
    assert view.image.image.shape == (9, 9)
    qtbot.waitUntil(lambda: view.corr_table.rowCount() == 3 and view.corr_table.item(0, 1) is not None
                    and view.corr_table.item(0, 1).text() != "", timeout=30000)
    rho = float(view.corr_table.item(0, 1).text())
    assert -1 <= rho <= 1
    # Click on cell (row 0, column 5).
    got = []
    view.pair_clicked.connect(lambda a, b: got.append((a, b)))
    scene = view.plot.getViewBox().mapViewToScene(pg_point(5.5, 0.5))
    view._on_mouse_clicked(type("E", (), {"scenePos": lambda self: scene})())
    assert got and got[0][0].id == view.clips[0].id and got[0][1].id == view.clips[5].id
    assert window.slots["B"].id == view.clips[5].id and window.slots["A"].id == view.clips[0].id
    # Switching metric shows that metric's matrix.
    view.metric_box.setCurrentIndex(2)
    assert view.metric() == "msssim" and view.image.image.shape == (9, 9)


def test_matrix_of_a_selection(window, qtbot):
    view = window.matrix_view
    table = window.library_panel.table
    table.selectAll()
    view.scope_box.setCurrentText("Selected clips")
    view.compute()
    qtbot.waitUntil(lambda: view.matrix is not None, timeout=30000)
    assert len(view.clips) == 9


def pg_point(x, y):
    from PySide6.QtCore import QPointF

    return QPointF(x, y)


def test_gui_values_equal_the_cli(window, qtbot):
    lib = window.library.path
    a, b = _clip(window, "low_2.wav"), _clip(window, "mid_1.wav")
    window.library_panel.select_clip(a.id)
    window.set_slot("B", b)
    qtbot.waitUntil(lambda: window.compare_panel.result is not None
                    and window.compare_panel.result["b"].id == b.id, timeout=20000)
    cli = _cli("distance", a.id, b.id, "--json", "--library", lib)
    for name, value in cli["distances"].items():
        assert window.compare_panel.values()[name] == pytest.approx(value, abs=1e-9)
    qtbot.waitUntil(lambda: window.neighbours_panel.result is not None
                    and window.neighbours_panel.result["query"].id == a.id, timeout=20000)
    cli = _cli("neighbours", a.id, "-k", "5", "--json", "--library", lib)
    for metric, rows in cli["neighbours"].items():
        shown = window.neighbours_panel.top(metric)
        assert [n.clip.id for n in shown] == [r["id"] for r in rows]
        assert [n.distance for n in shown] == pytest.approx([r["distance"] for r in rows], abs=1e-9)
