"""The map and the matrix views with many labels, and large matrices.

The library is the one ``docs/screenshots/make_labels_library.py`` builds
from the demo clips (each demo clip a label, with distorted copies of it),
made small here: 40 labels of 2 half-second clips.
"""

from __future__ import annotations

import csv
import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
N_LABELS, PER_LABEL = 40, 2


def _builder():
    spec = importlib.util.spec_from_file_location("make_labels_library",
                                                  ROOT / "docs" / "screenshots" / "make_labels_library.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def labels_library(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("labels")
    return _builder().build_labels_library(out, N_LABELS, PER_LABEL, seconds=0.5)


def _clip(i: int, label: str | None):
    from perceptlab.library.store import Clip

    return Clip(i, f"/nowhere/{i}.wav", f"clip_{i:05d}.wav", f"h{i}", 1, 0.0, 1.0, 22050, 1, "WAV", label, None, 0.0)


# -- core: the library, the palette, the summaries ----------------------------------------------------------


def test_the_labels_library_has_a_label_per_demo_clip(labels_library):
    from perceptlab.library.store import Library

    with Library(labels_library) as lib:
        clips = lib.clips()
    labels = {c.label for c in clips}
    assert len(clips) == N_LABELS * PER_LABEL and len(labels) == N_LABELS
    families = {lab.rsplit("_", 1)[0] for lab in labels}
    assert families == {"brass", "drums", "guitar", "organ", "piano", "strings"}  # spread over every family
    by_label = {}
    for c in clips:
        by_label.setdefault(c.label, []).append(c.name)
    assert all(len(v) == PER_LABEL for v in by_label.values())
    assert sorted(by_label["piano_01"]) == ["piano_01__gain_db-3.flac", "piano_01__identity.flac"]


def test_the_labels_library_refuses_bad_sizes(tmp_path):
    mod = _builder()
    with pytest.raises(ValueError, match="--labels: between 1 and 48"):
        mod.write_stimuli(tmp_path, n_labels=49)
    with pytest.raises(ValueError, match="--per-label"):
        mod.write_stimuli(tmp_path, per_label=0)
    with pytest.raises(ValueError, match="--seconds"):
        mod.write_stimuli(tmp_path, seconds=-1)
    with pytest.raises(FileNotFoundError, match="no demo clips"):
        mod.write_stimuli(tmp_path, demo_dir=tmp_path / "missing")


def test_the_labels_library_script_says_what_is_wrong(tmp_path, capsys):
    assert _builder().main([str(tmp_path / "out"), "--labels", "0"]) == 2
    assert "make_labels_library: --labels: between 1 and 48 (one per demo clip), got 0" in capsys.readouterr().err
    assert not (tmp_path / "out" / "labels.sqlite").exists()


@pytest.mark.parametrize("n", [2, 10, 40, 100])
def test_every_label_gets_its_own_colour_and_marker(n):
    from perceptlab.qt.label_legend import label_styles

    styles = label_styles([f"label {i}" for i in range(n)])
    assert len(styles) == n and len(set(styles.values())) == n


def test_the_palette_colours_are_far_apart():
    from perceptlab.qt.label_legend import _srgb_to_lab, distinct_colours, label_style

    colours = distinct_colours(100)
    assert len(set(colours)) == 100
    lab = _srgb_to_lab(np.array(colours, float))
    d = np.linalg.norm(lab[:, None] - lab[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert d[:40, :40].min() > 20  # CIELAB delta E: plainly different colours
    assert d.min() > 12
    assert 40 <= lab[:, 0].min() and lab[:, 0].max() <= 90  # visible on the map's black
    # Beyond the palette the colours come back, each time with another marker.
    assert len({label_style(i) for i in range(1000)}) == 1000


def test_label_block_means_equal_the_mean_over_each_label_pair():
    from perceptlab.analysis.matrix_summary import label_block_means

    rng = np.random.default_rng(3)
    labels = [None if i % 9 == 0 else f"l{i % 4}" for i in range(41)] + ["alone"]
    x = rng.normal(size=(len(labels), 3))
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    b = label_block_means(d, labels)
    assert b.labels == ["alone", "l0", "l1", "l2", "l3", "-"]
    names = ["-" if s is None else s for s in labels]
    for a, la in enumerate(b.labels):
        for c, lc in enumerate(b.labels):
            vals = [d[i, j] for i in range(len(names)) for j in range(len(names))
                    if names[i] == la and names[j] == lc and i != j]
            if la == "alone" and lc == "alone":
                assert np.isnan(b.means[a, c]) and b.pairs[a, c] == 0
            else:
                assert b.means[a, c] == pytest.approx(np.mean(vals), rel=1e-12)
                assert b.pairs[a, c] == (len(vals) // 2 if a == c else len(vals))
    with pytest.raises(ValueError, match="labels: 3 labels for a matrix of 42 clips"):
        label_block_means(d, labels[:3])


def test_a_stratified_sample_keeps_every_label():
    from perceptlab.analysis.matrix_summary import stratified_sample

    labels = ["big"] * 900 + [f"small{i % 50}" for i in range(100)] + [None] * 3
    idx = stratified_sample(labels, 200, seed=1)
    assert len(idx) == 200 and len(set(idx.tolist())) == 200
    got = [labels[i] for i in idx]
    assert set(got) == set(labels)  # every label, the unlabelled too
    # Each of the 51 small labels (the unlabelled too) keeps one clip; the big label the rest.
    assert got.count("big") == 200 - 51
    more = [labels[i] for i in stratified_sample(labels, 600, seed=1)]
    assert 480 <= more.count("big") <= 540  # about its share (90 %) when there is room
    assert got == sorted(got, key=lambda s: (s is None, s or ""))  # sorted by label
    np.testing.assert_array_equal(idx, stratified_sample(labels, 200, seed=1))
    with pytest.raises(ValueError, match="at least 1 clip"):
        stratified_sample(labels, 0)


# -- the map -------------------------------------------------------------------------------------------------

pytest.importorskip("PySide6.QtWidgets")


@pytest.fixture
def map_view(qtbot, labels_library):
    from perceptlab.analysis.library_metrics import register_library_metrics
    from perceptlab.library.store import Library
    from perceptlab.qt.map_view import QtMapView
    from perceptlab.qt.workers import QtTaskRunner

    runner = QtTaskRunner()
    view = QtMapView(runner)
    qtbot.addWidget(view, before_close_func=lambda _w: runner.shutdown(60000))
    view.resize(900, 600)
    view.show()
    qtbot.waitExposed(view)
    with Library(labels_library) as lib:
        names = register_library_metrics(lib)
    view.set_library(str(labels_library))
    view.refresh_sources(names)
    return view


def _fit(view, qtbot, metric="logmel-stats", method="pca"):
    view.source_box.blockSignals(True)
    view.source_box.setCurrentIndex(view.source_box.findData(metric))
    view.source_box.blockSignals(False)
    view._fill_methods()
    view.method_box.blockSignals(True)
    view.method_box.setCurrentIndex(view.method_box.findData(method))
    view.method_box.blockSignals(False)
    task = view.refit()
    assert task is not None
    qtbot.waitUntil(lambda: view.result is not None and view._task is None, timeout=60000)
    qtbot.wait(50)


def _widget_pos(view, index):
    from PySide6.QtCore import QPointF

    x, y = view.result["coords"][index]
    scene = view.view_box.mapViewToScene(QPointF(float(x), float(y)))
    return view.plot_widget.mapFromScene(scene)


@pytest.mark.qt
def test_the_first_map_draws_itself_when_quick_and_otherwise_says_what_it_needs(map_view, qtbot, labels_library,
                                                                              tmp_path, monkeypatch):
    import perceptlab.qt.map_view as map_module
    from perceptlab.library.store import Library

    names = [map_view.source_box.itemData(i) for i in range(map_view.source_box.count())]
    # 80 clips: the first source's map is fitted by itself, with no Refit.
    qtbot.waitUntil(lambda: map_view.result is not None and map_view._task is None, timeout=60000)
    assert map_view.stack.currentWidget() is map_view.plot_widget
    assert map_view.point_count() == N_LABELS * PER_LABEL
    assert map_view.result["metric"] == names[0]
    # Beyond the size drawn by itself, it waits for Refit and says how many clips it has.
    monkeypatch.setattr(map_module, "AUTO_DRAW_MAX", {"vector": 10, "matrix": 10})
    map_view.set_library(str(labels_library))
    map_view.refresh_sources(names)
    assert map_view._task is None and map_view.stack.currentWidget() is map_view.empty
    text = map_view.empty.text()
    assert f"{N_LABELS * PER_LABEL} clips" in text and "Refit" in text and "Import clips" not in text
    # An empty library says how to get a map.
    empty = tmp_path / "empty.sqlite"
    Library(empty).close()
    map_view.set_library(str(empty))
    map_view.refresh_sources(names)
    assert map_view._task is None
    assert "Import clips" in map_view.empty.text() and "Refit" in map_view.empty.text()
    map_view.set_library(str(labels_library))
    _fit(map_view, qtbot)
    assert map_view.stack.currentWidget() is map_view.plot_widget
    assert map_view.point_count() == N_LABELS * PER_LABEL


@pytest.mark.qt
def test_a_narrow_map_dock_still_names_the_whole_source(map_view, qtbot):
    box = map_view.source_box
    map_view.resize(300, 400)  # narrower than the default right column
    qtbot.wait(20)
    texts = [box.itemText(i) for i in range(box.count())]
    assert box.count() >= 2 and box.toolTip() == box.currentText()
    widest = max(box.fontMetrics().horizontalAdvance(t) for t in texts)
    assert box.view().minimumWidth() >= widest  # the open list shows every name whole
    box.setCurrentIndex(box.count() - 1)
    assert box.toolTip() == texts[-1]
    qtbot.waitUntil(lambda: map_view._task is None, timeout=60000)


@pytest.mark.qt
def test_hovering_a_point_names_its_clip_and_label(map_view, qtbot):
    _fit(map_view, qtbot)
    view = map_view
    i = 7
    clip = view.clip_at(i)
    qtbot.mouseMove(view.plot_widget.viewport(), _widget_pos(view, i))
    qtbot.waitUntil(lambda: view.view_box.toolTip() != "", timeout=5000)
    tip = view.view_box.toolTip()
    assert f"{clip.name} · {clip.label}" in tip
    assert "data=" not in tip
    assert view.hover_text(i).startswith(f"{clip.name} · {clip.label}")


@pytest.mark.qt
def test_the_selected_clip_is_ringed_and_stays_ringed_after_a_refit(map_view, qtbot):
    _fit(map_view, qtbot)
    view = map_view
    assert len(view.ring.points()) == 0
    clip = view.clip_at(11)
    view.set_selected_clip(clip.id)
    ring = view.ring.points()
    assert len(ring) == 1
    x, y = view.result["coords"][11]
    assert (ring[0].pos().x(), ring[0].pos().y()) == pytest.approx((x, y))
    # A refit with another method moves the clip; the ring follows it.
    _fit(view, qtbot, metric="mse", method="mds")
    j = next(k for k, c in enumerate(view.result["clips"]) if c.id == clip.id)
    x, y = view.result["coords"][j]
    ring = view.ring.points()
    assert len(ring) == 1 and (ring[0].pos().x(), ring[0].pos().y()) == pytest.approx((x, y))
    # Clicking another point selects it (and says so to the library).
    got = []
    view.clip_clicked.connect(got.append)
    other = view.scatter.points()[3]
    view._on_points_clicked(view.scatter, [other])
    assert got and got[0].id == view.selected_clip_id == view.clip_at(other.data()).id


@pytest.mark.qt
def test_the_legend_lists_every_label_and_its_filter_hides_points(map_view, qtbot):
    from PySide6.QtCore import Qt

    _fit(map_view, qtbot)
    view, legend = map_view, map_view.legend
    assert legend.list.count() == N_LABELS
    assert legend.list.item(0).text() == "brass_01  (2)"
    legend.search.setText("brass")
    listed = legend.listed_labels()
    assert listed and all("brass" in lab for lab in listed)
    legend.hide_button.click()
    hidden = {c.id for c in view.result["clips"] if "brass" in c.label}
    assert view.point_count() == N_LABELS * PER_LABEL - len(hidden)
    assert not hidden & {view.clip_at(p.data()).id for p in view.scatter.points()}
    assert hidden.isdisjoint(c.id for c in view.shown_clips())
    # A check box shows one label again; hidden labels stay hidden after a refit.
    legend.search.clear()
    item = next(legend.list.item(r) for r in range(legend.list.count())
                if legend.list.item(r).data(Qt.UserRole) == "brass_03")
    item.setCheckState(Qt.Checked)
    assert view.point_count() == N_LABELS * PER_LABEL - len(hidden) + PER_LABEL
    view.refit()
    qtbot.waitUntil(lambda: view._task is None, timeout=60000)
    assert view.point_count() == N_LABELS * PER_LABEL - len(hidden) + PER_LABEL
    brass = {c.label for c in view.result["clips"] if "brass" in c.label}
    assert legend.summary.text() == f"{N_LABELS} labels, {N_LABELS - len(brass) + 1} shown"
    # Double-clicking a label shows it alone; again: every label.
    item = legend.list.item(5)
    legend.list.itemDoubleClicked.emit(item)
    assert {view.clip_at(p.data()).label for p in view.scatter.points()} == {item.data(Qt.UserRole)}
    legend.list.itemDoubleClicked.emit(item)
    assert view.point_count() == N_LABELS * PER_LABEL and not legend.hidden_labels()


@pytest.mark.qt
def test_forty_labels_are_forty_distinct_colour_and_marker_pairs(map_view, qtbot):
    _fit(map_view, qtbot)
    view = map_view
    style_of: dict[str, set] = {}
    for p in view.scatter.points():
        label = view.clip_at(p.data()).label
        style_of.setdefault(label, set()).add((p.brush().color().getRgb()[:3], p.symbol()))
    assert len(style_of) == N_LABELS
    assert all(len(s) == 1 for s in style_of.values())  # one style per label
    assert len({next(iter(s)) for s in style_of.values()}) == N_LABELS  # and no two labels alike


# -- the matrix ----------------------------------------------------------------------------------------------


@pytest.fixture
def matrix_view(qtbot, labels_library):
    from perceptlab.analysis.library_metrics import register_library_metrics
    from perceptlab.library.store import Library
    from perceptlab.qt.analysis_state import QtLibraryAnalysis
    from perceptlab.qt.matrix_view import QtMatrixView
    from perceptlab.qt.workers import QtTaskRunner

    runner = QtTaskRunner()
    analysis = QtLibraryAnalysis(runner)
    view = QtMatrixView(runner, analysis)
    qtbot.addWidget(view, before_close_func=lambda _w: runner.shutdown(60000))
    view.resize(700, 900)
    view.show()
    qtbot.waitExposed(view)
    with Library(labels_library) as lib:
        register_library_metrics(lib)
    analysis.set_library(str(labels_library))
    view.refresh_metrics(["mse", "logmel-stats"])
    return view


def _double_click_axis(view, row: float):
    from PySide6.QtCore import QPointF

    x = view.axis.sceneBoundingRect().center().x()
    y = view.plot.getViewBox().mapViewToScene(QPointF(0.0, row)).y()
    pos = QPointF(x, y)
    view._on_mouse_clicked(type("E", (), {"scenePos": lambda self: pos, "double": lambda self: True})())
    return pos


@pytest.mark.qt
def test_the_matrix_says_press_compute_instead_of_empty_axes(matrix_view, qtbot):
    view = matrix_view
    view.show_metric()
    assert view.stack.currentWidget() is view.empty and "Press Compute" in view.empty.text()
    assert not view.export_button.isEnabled()
    view.compute()
    qtbot.waitUntil(lambda: view.matrix is not None, timeout=60000)
    assert view.stack.currentWidget() is view.graphics and view.export_button.isEnabled()


@pytest.mark.qt
def test_label_ticks_never_overlap_and_hover_names_the_label(matrix_view, qtbot):
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QFontMetrics

    view = matrix_view
    view.compute()
    qtbot.waitUntil(lambda: view.matrix is not None, timeout=60000)
    assert len(view.axis.groups) == N_LABELS
    line = QFontMetrics(view.axis.font()).height()
    n = len(view.clips)
    for pixels in (120, 300, 700, 4000):
        (_, values), = view.axis.tickValues(n, 0, pixels)  # inverted view: high to low
        gaps = np.diff(values) * pixels / n
        assert np.all(gaps >= line), (pixels, gaps.min())
    few = len(view.axis.tickValues(0, n, 120)[0][1])
    assert 1 <= few < N_LABELS and len(view.axis.tickValues(0, n, 4000)[0][1]) == N_LABELS
    # What is drawn now: names at their blocks' centres, none touching.
    vb = view.plot.getViewBox()
    (_, values), = view.axis.tickValues(*vb.viewRange()[1], view.axis.height())
    ys = sorted(vb.mapViewToScene(QPointF(0, v)).y() for v in values)
    assert values and np.all(np.diff(ys) >= line - 0.5)
    # Hovering the axis names the block under the mouse in full, labelled or not on the axis.
    s, e, label = view.axis.groups[5]
    pos = QPointF(view.axis.sceneBoundingRect().center().x(), vb.mapViewToScene(QPointF(0, (s + e) / 2)).y())
    view._on_mouse_moved(pos)
    assert view.readout.text().startswith(f"{label}: {e - s} clips")
    # A cell reads out its pair.
    cell = vb.mapViewToScene(QPointF(3.5, 1.5))
    view._on_mouse_moved(cell)
    a, b = view.clips[1], view.clips[3]
    assert view.readout.text() == f"{a.name} ({a.label}) × {b.name} ({b.label}): {view.matrix[1, 3]:.5f}"


@pytest.mark.qt
def test_zoom_to_one_label_and_back(matrix_view, qtbot):
    view = matrix_view
    view.compute()
    qtbot.waitUntil(lambda: view.matrix is not None, timeout=60000)
    full = view.matrix.copy()
    ids = [c.id for c in view.clips]
    assert view.label_box.count() == N_LABELS + 1 and view.label_box.itemText(1) == "brass_01 (2)"
    view.label_box.setCurrentIndex(view.label_box.findData("guitar_02"))
    assert {c.label for c in view.clips} == {"guitar_02"} and view.image.image.shape == (PER_LABEL, PER_LABEL)
    rows = [ids.index(c.id) for c in view.clips]
    np.testing.assert_allclose(view.matrix, full[np.ix_(rows, rows)])
    assert [t for _, _, t in view.axis.groups] == [c.name for c in view.clips]  # clip names on the axis
    # Double-click on the axis: back to every label; again on a block: zoom to it.
    _double_click_axis(view, 0.5)
    assert view.zoom_label is None and len(view.clips) == N_LABELS * PER_LABEL
    s, e, label = view.axis.groups[9]
    _double_click_axis(view, (s + e) / 2)
    assert view.zoom_label == label and {c.label for c in view.clips} == {label}
    assert view.label_box.currentData() == label
    view.zoom_to_label(None)
    assert view.label_box.currentIndex() == 0 and len(view.clips) == N_LABELS * PER_LABEL
    with pytest.raises(ValueError, match="label 'nope': not among the clips"):
        view.zoom_to_label("nope")


@pytest.mark.qt
def test_export_the_matrix_as_csv_and_the_view_as_png(matrix_view, qtbot, tmp_path):
    from PySide6.QtGui import QImage

    view = matrix_view
    with pytest.raises(ValueError, match="nothing to export"):
        view.export_png(str(tmp_path / "x.png"))
    view.compute()
    qtbot.waitUntil(lambda: view.matrix is not None, timeout=60000)
    assert [a.text() for a in view.export_button.menu().actions()] == ["Matrix as CSV…", "View as PNG…"]
    task = view.export_csv(str(tmp_path / "m.csv"))
    qtbot.waitUntil(lambda: view.status.text() == f"Saved {tmp_path / 'm.csv'}", timeout=30000)
    with open(tmp_path / "m.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    n = len(view.clips)
    assert rows[0][:3] == ["id", "name", "label"] and len(rows) == n + 1
    assert rows[0][3] == f"{view.clips[0].id}:{view.clips[0].name}"
    assert [r[1] for r in rows[1:]] == [c.name for c in view.clips]
    assert [r[2] for r in rows[1:]] == [c.label for c in view.clips]
    np.testing.assert_allclose(np.array([[float(v) for v in r[3:]] for r in rows[1:]]), view.matrix, rtol=1e-12)
    assert task is not None
    view.export_png(str(tmp_path / "m.png"))
    img = QImage(str(tmp_path / "m.png"))
    assert not img.isNull() and img.width() == view.graphics.width() and img.height() == view.graphics.height()
    with pytest.raises(OSError, match="cannot write"):
        view.export_png(str(tmp_path / "no-such-dir" / "m.png"))


@pytest.mark.qt
def test_a_large_matrix_is_summarised_by_label_in_a_worker(qtbot, tmp_path):
    from PySide6.QtCore import QTimer

    from perceptlab.analysis.matrix_summary import LARGE_MATRIX_CLIPS
    from perceptlab.qt.analysis_state import QtLibraryAnalysis
    from perceptlab.qt.matrix_axis import LABEL_MEANS
    from perceptlab.qt.matrix_view import QtMatrixView
    from perceptlab.qt.workers import QtTaskRunner

    n, n_labels = LARGE_MATRIX_CLIPS + 500, 50
    rng = np.random.default_rng(0)
    labels = [f"label {i % n_labels:02d}" for i in range(n)]
    centre = rng.normal(size=(n_labels, 4)) * 3
    x = centre[np.arange(n) % n_labels] + rng.normal(size=(n, 4))
    sq = (x ** 2).sum(1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0))
    np.fill_diagonal(d, 0)
    clips = [_clip(i, labels[i]) for i in range(n)]

    runner = QtTaskRunner()
    analysis = QtLibraryAnalysis(runner)
    analysis.library_path = str(tmp_path / "synthetic.sqlite")
    analysis._matrices["mse"] = (clips, d)  # as if computed
    view = QtMatrixView(runner, analysis)
    qtbot.addWidget(view, before_close_func=lambda _w: runner.shutdown(60000))
    view.resize(700, 900)
    view.show()
    view.refresh_metrics(["mse"])
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(10)
    t0 = time.monotonic()
    view.show_metric()
    returned = time.monotonic() - t0
    # The GUI thread is back at once: the summary is not there yet, the view says it is coming.
    assert view.blocks is None and view.mode == LABEL_MEANS and "summarising" in view.status.text()
    assert view.stack.currentWidget() is view.empty
    qtbot.waitUntil(lambda: view.blocks is not None, timeout=60000)
    timer.stop()
    assert returned < 2.0 and len(ticks) >= 2  # the event loop ran while the worker summed
    assert view.image.image.shape == (n_labels, n_labels) and view.blocks.labels[0] == "label 00"
    a = [i for i in range(n) if labels[i] == "label 03"]
    b = [i for i in range(n) if labels[i] == "label 07"]
    assert view.matrix[3, 7] == pytest.approx(d[np.ix_(a, b)].mean(), rel=1e-9)
    assert view.matrix[3, 3] == pytest.approx(d[np.ix_(a, a)].sum() / (len(a) * (len(a) - 1)), rel=1e-9)
    assert view.matrix[3, 3] < view.matrix[3, 7]  # the clusters show on the diagonal
    assert f"{n:,} clips" in view.status.text() and "mean distance" in view.status.text()
    vb = view.plot.getViewBox()
    from PySide6.QtCore import QPointF

    view._on_mouse_moved(vb.mapViewToScene(QPointF(7.5, 3.5)))
    assert view.readout.text().startswith("label 03 × label 07: mean ")
    # A label's clips, clip by clip; back to the summary without summing again.
    view.zoom_to_label("label 03")
    assert view.image.image.shape == (len(a), len(a)) and {c.label for c in view.clips} == {"label 03"}
    view.zoom_to_label(None)
    assert view.blocks is not None and view.image.image.shape == (n_labels, n_labels)
    # The summary exports as a label x label table.
    view.export_csv(str(tmp_path / "means.csv"))
    qtbot.waitUntil(lambda: view.status.text().startswith("Saved"), timeout=30000)
    with open(tmp_path / "means.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:3] == ["label", "clips", "label 00"] and rows[4][0] == "label 03"
    assert float(rows[4][2 + 7]) == pytest.approx(view.matrix[3, 7], rel=1e-12)


@pytest.mark.qt
def test_a_large_unlabelled_matrix_is_shown_as_a_sample(qtbot, tmp_path):
    from perceptlab.qt.analysis_state import QtLibraryAnalysis
    from perceptlab.qt.matrix_axis import CLIPS
    from perceptlab.qt.matrix_view import QtMatrixView
    from perceptlab.qt.workers import QtTaskRunner

    n = 300
    rng = np.random.default_rng(1)
    d = rng.random((n, n))
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0)
    clips = [_clip(i, None) for i in range(n)]
    runner = QtTaskRunner()
    analysis = QtLibraryAnalysis(runner)
    analysis.library_path = str(tmp_path / "synthetic.sqlite")
    analysis._matrices["mse"] = (clips, d)
    view = QtMatrixView(runner, analysis)
    qtbot.addWidget(view, before_close_func=lambda _w: runner.shutdown(60000))
    view.large_limit = 100
    view.refresh_metrics(["mse"])
    view.show_metric()
    assert view.mode == CLIPS and view.sampled and len(view.clips) == 100
    assert "a sample of 100 clips" in view.status.text()
    ids = [c.id for c in view.clips]
    np.testing.assert_allclose(view.matrix, d[np.ix_(ids, ids)])
    # Zoomed to the (one) label, a label larger than the limit is shown as every k-th clip by name.
    view.zoom_to_label("-")
    names = sorted(c.name for c in clips)
    assert len(view.clips) == 100 and [c.name for c in view.clips] == [names[round(k * 299 / 99)] for k in range(100)]
    assert "label -, 100 clips" in view.status.text()
