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
    # Each local map has the shape of the two compared images (whole clips,
    # padded to the pair's width); switching maps changes the image.
    comparison = panel.comparison()
    shape = comparison.images[0].shape
    assert shape == comparison.images[1].shape == (128, comparison.width_frames)
    assert comparison.width_frames != 128  # not the old centre excerpt
    for i in range(panel.map_box.count()):
        panel.map_box.setCurrentIndex(i)
        assert panel.current_map().shape == shape
        assert panel.image.image.shape == shape
    panel.map_box.setCurrentIndex(1)
    assert panel.current_map().max() > 0  # 1 - SSIM of different tones


def test_compare_panel_shows_what_was_compared_and_whole_clip_distances(window, qtbot):
    from perceptlab.analysis.local_maps import local_maps
    from perceptlab.analysis.similarity import Query, pair_distances
    from perceptlab.audio.features import compared_width

    a, b = _clip(window, "low_0.wav"), _clip(window, "mid_2.wav")  # 1.0 s and 1.5 s
    window.library_panel.select_clip(a.id)
    window.set_slot("B", b)
    panel = window.compare_panel
    qtbot.waitUntil(lambda: panel.result is not None and panel.result["b"].id == b.id, timeout=30000)
    names = [panel.table.item(r, 0).data(Qt.UserRole) for r in range(panel.table.rowCount())]
    assert names == window.metric_names  # every metric of the library, in registry order
    assert {"logmel-stats", "mfcc-stats"} <= set(names)
    # The distances are the whole-clip, aligned pair distances of the core.
    lib = window.library
    qa, qb = Query(a.path, a.name, a), Query(b.path, b.name, b)
    expected = pair_distances(lib, qa, qb, names)
    assert panel.values() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    for row, name in enumerate(names):
        assert float(panel.table.item(row, 1).text()) == pytest.approx(expected[name], abs=1e-6)
    # Baselines are marked as such, and get a percentile from their library matrix.
    base = names.index("logmel-stats")
    assert "baseline" in panel.table.item(base, 0).text()
    assert "baseline" not in panel.table.item(names.index("nlpd"), 0).text()
    qtbot.waitUntil(lambda: "%" in panel.table.item(base, 2).text(), timeout=60000)
    clips, d = window.analysis.matrix("logmel-stats")
    off = d[np.triu_indices(len(d), 1)]
    assert float(panel.table.item(base, 2).text().rstrip(" %")) == pytest.approx(
        100 * np.mean(off < expected["logmel-stats"]), abs=0.06)
    # What was compared: whole clips, the seconds of each file, the padded width.
    c = panel.comparison()
    spf = window.config.seconds_per_frame()
    frames_b = window.library.get_features(b.content_hash, window.config.hash).shape[1]
    assert c.excerpt == "whole" and c.lag_s == 0.0  # unrelated tones are not shifted
    assert c.width_frames == compared_width(frames_b)
    text = panel.compared_label.text()
    assert text.startswith("Compared: whole clips")
    assert f"A {c.region_a[0]:.2f}–{c.region_a[1]:.2f} s" in text
    assert f"B {c.region_b[0]:.2f}–{c.region_b[1]:.2f} s" in text
    assert f"width {c.width_frames * spf:.2f} s (silence-padded)" in text
    assert c.region_b[1] == pytest.approx(1.5, abs=2 * spf) and c.region_a[1] == pytest.approx(1.0, abs=2 * spf)
    # The maps are those of the two compared images.
    maps = local_maps(*c.images, window.config)
    panel.map_box.setCurrentIndex(0)
    np.testing.assert_allclose(panel.current_map(), maps["difference"])
    # The spectrogram marks the compared part of the clip it shows: A, then B.
    view = window.spectrogram
    qtbot.waitUntil(lambda: view.compared() is not None, timeout=10000)
    assert view.compared() == pytest.approx(c.region_a)
    assert "compared with B" in view.compared_label.text() and "whole clip" in view.compared_label.text()
    window.player.select("B")
    qtbot.waitUntil(lambda: b.name in view.caption.text(), timeout=10000)
    assert view.compared() == pytest.approx(c.region_b)
    assert "compared with A" in view.compared_label.text()
    # A new pair: the old marks go while it is being compared.
    window.set_slot("B", _clip(window, "high_0.wav"))
    assert view.compared() is None and view.compared_label.text() == ""


def test_a_delayed_copy_is_aligned_and_the_regions_say_so(qtbot, tmp_path):
    import soundfile as sf

    from perceptlab.audio.features import FeatureConfig
    from perceptlab.library.features import clip_image
    from perceptlab.library.importer import import_files
    from perceptlab.library.store import Library
    from perceptlab.qt.compare_panel import compare_pair, compared_text
    from perceptlab.qt.spectrogram_view import QtSpectrogramView

    rate = 22050
    rng = np.random.default_rng(4)
    x = (0.2 * rng.standard_normal(2 * rate)).astype(np.float32)
    delay = int(0.03 * rate)
    root = tmp_path / "clips"
    root.mkdir()
    sf.write(root / "orig.wav", x, rate)
    sf.write(root / "late.wav", np.concatenate([np.zeros(delay, np.float32), x]), rate)
    sf.write(root / "other.wav", (0.2 * rng.standard_normal(rate)).astype(np.float32), rate)
    path = tmp_path / "lib.sqlite"
    with Library(path) as lib:
        import_files(lib, [root])
        by_name = {c.name: c for c in lib.clips()}
    cfg = FeatureConfig()
    res = compare_pair(str(path), by_name["orig.wav"], by_name["late.wav"], None, cfg)
    c = res["comparison"]
    assert c.lag_s == pytest.approx(0.03, abs=1 / rate)
    assert c.region_a[0] == 0.0 and c.region_b[0] == pytest.approx(0.03, abs=1 / rate)
    assert res["distances"]["nlpd"] < 0.05  # the same sound, once shifted
    assert "B lags A by 30 ms: aligned" in compared_text(c, cfg)
    assert not res["errors"] and "mfcc-stats" in res["distances"]
    # The view dims what the alignment left out of B (its first 30 ms).
    view = QtSpectrogramView()
    qtbot.addWidget(view)
    with Library(path) as lib:
        view.set_image(clip_image(lib, by_name["late.wav"], cfg), cfg)
    view.set_compared(c.region_b, "compared with A")
    before, after = view.compared_dims
    assert before.isVisible() and before.getRegion() == pytest.approx((0.0, c.region_b[0]))
    assert [line.value() for line in view.compared_lines] == pytest.approx(list(c.region_b))
    assert not any(item.movable for item in view.compared_dims)
    # The loop region is drawn and set as before, above the marks.
    view._on_region_dragged(0.5, 1.0, True)
    assert view.loop() == pytest.approx((0.5, 1.0)) and view.compared() == pytest.approx(c.region_b)
    assert view.loop_region.zValue() > max(i.zValue() for i in (*view.compared_dims, *view.compared_lines))
    view.set_image(None)
    assert view.compared() is None and not any(i.isVisible() for i in view.compared_lines)


def test_a_metric_that_cannot_be_computed_does_not_hide_the_others(tmp_path, monkeypatch):
    from perceptlab.analysis import clip_inputs
    from perceptlab.audio.features import FeatureConfig
    from perceptlab.library.importer import import_files
    from perceptlab.library.store import Library
    from perceptlab.qt.compare_panel import compare_pair
    from perceptlab.analysis.rankings import rank_all
    from conftest import write_clip

    for i in range(3):
        write_clip(tmp_path / "c" / f"t{i}.wav", seconds=1.0, freq=200.0 * (i + 1))
    path = tmp_path / "lib.sqlite"
    with Library(path) as lib:
        import_files(lib, [tmp_path / "c"])
        a, b = lib.clips()[:2]

    def refuse(*_args, **_kwargs):
        raise ValueError("no statistics here")

    monkeypatch.setattr(clip_inputs, "baseline_standardisation", refuse)
    res = compare_pair(str(path), a, b, None, FeatureConfig())
    assert {"mse", "nlpd", "msssim"} <= set(res["distances"])
    assert set(res["errors"]) == {"logmel-stats", "mfcc-stats"}
    ranked = rank_all(str(path), a, None, FeatureConfig())
    assert "nlpd" in ranked["rankings"] and "no statistics here" in ranked["errors"]["mfcc-stats"]


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
    n = len(view.metric_names)
    assert n >= 5 and {"logmel-stats", "mfcc-stats"} <= set(view.metric_names)
    qtbot.waitUntil(lambda: view.corr_table.rowCount() == n and view.corr_table.item(n - 1, 0) is not None
                    and view.corr_table.item(n - 1, 0).text() != "", timeout=60000)
    # Every row of the metric-vs-metric table is in view.
    t = view.corr_table
    assert t.height() >= t.horizontalHeader().height() + n * t.rowHeight(0)
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


def test_map_places_new_clips_by_the_pair_rule(tmp_path):
    from perceptlab.analysis.projection import _knn_interpolate
    from perceptlab.analysis.library_metrics import register_library_metrics
    from perceptlab.analysis.matrices import cross_distances
    from perceptlab.library.importer import import_files
    from perceptlab.library.store import Library
    from perceptlab.qt.map_view import compute_map
    from conftest import write_clip

    for i in range(5):  # unequal lengths: no common width to build one index over
        write_clip(tmp_path / "c" / f"t{i}.wav", seconds=0.8 + 0.6 * i, freq=150.0 * (i + 1))
    path = tmp_path / "lib.sqlite"
    with Library(path) as lib:
        import_files(lib, [tmp_path / "c"])
    fitted = compute_map(str(path), "nlpd", "mds")
    assert fitted["placed"] == 0 and fitted["coords"].shape == (5, 2)
    write_clip(tmp_path / "d" / "new.wav", seconds=2.7, freq=320.0)
    with Library(path) as lib:
        import_files(lib, [tmp_path / "d"])
    grown = compute_map(str(path), "nlpd", "mds", fitted["projection"], fitted["fitted_ids"])
    assert grown["placed"] == 1 and [c.name for c in grown["clips"]][-1] == "new.wav"
    with Library(path) as lib:
        register_library_metrics(lib)
        by_id = {c.id: c for c in lib.clips()}
        old = [by_id[i] for i in fitted["fitted_ids"]]
        d = cross_distances(lib, "nlpd", [grown["clips"][-1]], old)
    np.testing.assert_allclose(grown["coords"][-1], _knn_interpolate(d, fitted["coords"], 5)[0])
    np.testing.assert_allclose(grown["coords"][:5], fitted["coords"])
    # A baseline is a vector metric: PCA of its z-scored statistics, and new clips placed into it.
    pca = compute_map(str(path), "logmel-stats", "pca")
    assert pca["coords"].shape == (6, 2) and np.isfinite(pca["coords"]).all()
    with pytest.raises(ValueError, match="MDS"):
        compute_map(str(path), "nlpd", "pca")
