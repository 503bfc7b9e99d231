"""The neighbours panel: never stale, says why a clip has no neighbours, readable with five metrics."""

from __future__ import annotations

import threading
import time

import pytest

from conftest import _delete_closed_widgets, _wind_down

pytest.importorskip("PySide6.QtWidgets")

from PySide6.QtCore import Qt  # noqa: E402

pytestmark = pytest.mark.qt


def _clip(window, name):
    return next(c for c in window.library_panel.model.clips() if c.name == name)


def _shown_clip_ids(panel) -> set[int]:
    """Ids of every clip the table shows, whatever its layout."""
    t = panel.table
    ids = set()
    for r in range(t.rowCount()):
        for c in range(t.columnCount()):
            item = t.item(r, c)
            clip = None if item is None else item.data(Qt.UserRole)
            if clip is not None and hasattr(clip, "id"):
                ids.add(clip.id)
    return ids


@pytest.fixture
def window_with_a_broken_clip(qtbot, clip_tree, tmp_path):
    """The main window on the ``clip_tree`` clips plus one file that cannot be decoded."""
    from perceptlab.library.importer import import_files
    from perceptlab.library.store import Library
    from perceptlab.qt.main_window import QtMainWindow

    (clip_tree / "mid" / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really audio")
    path = tmp_path / "broken-lib.sqlite"
    with Library(path) as lib:
        summary = import_files(lib, [clip_tree])
    assert len(summary.failed) == 1
    w = QtMainWindow(library_path=path)
    qtbot.addWidget(w, before_close_func=_wind_down)
    w.show()
    qtbot.waitExposed(w)
    qtbot.waitUntil(lambda: w.metrics_loaded, timeout=30000)
    yield w
    _delete_closed_widgets()


def test_a_new_selection_clears_the_old_rows_at_once_and_a_late_result_never_wins(main_window, qtbot,
                                                                                   monkeypatch):
    import perceptlab.qt.neighbours_panel as neighbours_panel

    w, panel = main_window, main_window.neighbours_panel
    a, b, c = _clip(w, "low_0.wav"), _clip(w, "high_2.wav"), _clip(w, "mid_1.wav")
    w.library_panel.select_clip(a.id)
    qtbot.waitUntil(lambda: panel.result is not None and panel.result["query"].id == a.id, timeout=30000)
    assert _shown_clip_ids(panel)  # A's neighbours are on display

    # Selecting B: A's rows go at once, and the panel says what it is doing.
    w.library_panel.select_clip(b.id)
    assert not _shown_clip_ids(panel), "the previous clip's neighbours are still shown"
    assert f"computing neighbours of {b.name}" in panel.title.text().lower()
    qtbot.waitUntil(lambda: panel.result is not None and panel.result["query"].id == b.id, timeout=30000)

    # A query whose answer comes late (it ignores cancel) and one that fails
    # late never overwrite the newer query's rows or title.
    real = neighbours_panel.rank_all
    late = threading.Event()

    def slow(library_path, query, *args, **kwargs):
        if query.id in (a.id, c.id):
            time.sleep(2.5)
            kwargs["cancel"] = None
            late.set()
            if query.id == c.id:
                raise ValueError("this late failure belongs to an older query")
            out = real(library_path, query, *args, **kwargs)
            return out
        return real(library_path, query, *args, **kwargs)

    monkeypatch.setattr(neighbours_panel, "rank_all", slow)
    for older in (a, c):  # the older query holds one worker thread while B's runs on the other
        late.clear()
        w.library_panel.select_clip(older.id)
        w.library_panel.select_clip(b.id)
        qtbot.waitUntil(lambda: panel.result is not None and panel.result["query"].id == b.id, timeout=30000)
        assert not late.is_set()  # B was answered while the older query was still running
        assert w.tasks.wait(30000)
        qtbot.wait(200)  # the late signals are delivered now
        assert panel.result["query"].id == b.id
        assert "Cannot rank" not in panel.title.text() and b.name in panel.title.text()
        shown = _shown_clip_ids(panel)
        expected = {n.clip.id for m in panel.metrics_shown() for n in panel.top(m)}
        assert shown and shown <= expected and b.id not in shown


def test_a_clip_that_failed_to_import_clears_the_panel_and_says_why(window_with_a_broken_clip, qtbot):
    w = window_with_a_broken_clip
    panel = w.neighbours_panel
    good = _clip(w, "mid_0.wav")
    broken = _clip(w, "broken.wav")
    assert not broken.ok and broken.error
    w.library_panel.select_clip(good.id)
    qtbot.waitUntil(lambda: panel.result is not None and panel.result["query"].id == good.id, timeout=30000)
    assert _shown_clip_ids(panel)
    w.library_panel.select_clip(broken.id)
    assert w.slots["A"].id == broken.id
    assert not _shown_clip_ids(panel)
    assert panel.result is None and panel.metrics_shown() == []
    title = panel.title.text()
    prefix = f"{broken.name} could not be decoded: "
    assert title.startswith(prefix)
    reason = title[len(prefix):]
    assert reason and reason in broken.error and "decoded" not in reason  # said once, with the decoder's reason
    # ... and a good clip afterwards is ranked again.
    w.library_panel.select_clip(good.id)
    qtbot.waitUntil(lambda: panel.result is not None and panel.result["query"].id == good.id, timeout=30000)
    assert _shown_clip_ids(panel) and "could not be decoded" not in panel.title.text()


@pytest.fixture
def demo_window(qtbot, tmp_path):
    """The main window at 1280 x 800 on the demo clips (48 clips, five metrics)."""
    from perceptlab.library.demo import demo_dir
    from perceptlab.library.importer import import_files
    from perceptlab.library.store import Library
    from perceptlab.qt.main_window import QtMainWindow

    path = tmp_path / "demo.sqlite"
    with Library(path) as lib:
        import_files(lib, [demo_dir()])
    w = QtMainWindow(library_path=path)
    qtbot.addWidget(w, before_close_func=_wind_down)
    w.resize(1280, 800)
    w.show()
    qtbot.waitExposed(w)
    qtbot.waitUntil(lambda: w.metrics_loaded, timeout=30000)
    yield w
    _delete_closed_widgets()


FIVE = ["mse", "nlpd", "msssim", "logmel-stats", "mfcc-stats"]


def _fits(widget, text: str, width: int, margin: int = 6) -> bool:
    return widget.fontMetrics().horizontalAdvance(text) + margin <= width


def test_five_metrics_and_a_top_10_read_well_in_the_dock_at_1280_by_800(demo_window, qtbot):
    from perceptlab.metrics.registry import get_metric
    from perceptlab.qt.neighbours_panel import AGREE_COL, DIST_COL, NAME_COL, disagreement_ids

    w = demo_window
    panel = w.neighbours_panel
    panel.k_box.setValue(10)
    query = _clip(w, "piano_03.flac")
    w.library_panel.select_clip(query.id)
    qtbot.waitUntil(lambda: panel.result is not None and panel.result["query"].id == query.id, timeout=60000)
    qtbot.wait(50)
    listed = [panel.metric_box.itemData(i) for i in range(panel.metric_box.count())]
    assert set(FIVE) <= set(listed) and set(FIVE) <= set(panel.metrics_shown())
    t = panel.table
    header = t.horizontalHeader()
    flagged_any = False
    for metric in FIVE:
        panel.set_metric(metric)
        qtbot.wait(20)
        assert panel.metric() == metric
        # Ten rows, every one of them in view without scrolling.
        assert t.rowCount() == 10
        last = t.visualItemRect(t.item(9, NAME_COL))
        assert last.top() >= 0 and last.bottom() <= t.viewport().height(), (metric, last, t.viewport().size())
        # No header text is elided: each fits its column.
        for col in range(t.columnCount()):
            text = t.horizontalHeaderItem(col).text()
            assert _fits(header, text, header.sectionSize(col), margin=8), (metric, text, header.sectionSize(col))
        assert t.horizontalHeaderItem(DIST_COL).text() == get_metric(metric).display_name
        assert "Lower is closer" in t.horizontalHeaderItem(DIST_COL).toolTip()
        # Every name is whole, and the rows are this metric's top 10.
        top = panel.top(metric)
        assert [t.item(r, NAME_COL).data(Qt.UserRole).id for r in range(10)] == [n.clip.id for n in top]
        for r in range(10):
            name = t.item(r, NAME_COL).text()
            assert name == top[r].clip.name and _fits(t, name, t.columnWidth(NAME_COL)), name
        # Agreement across metrics: how many of the other metrics' top 10 hold the clip.
        others = [m for m in panel.metrics_shown() if m != metric]
        for r, n in enumerate(top):
            expected = sum(n.clip.id in {o.clip.id for o in panel.top(m)} for m in others)
            assert t.item(r, AGREE_COL).text() == f"{expected}/{len(others)}"
        # The orange mark: exactly the clips another metric ranks beyond 30th.
        far = disagreement_ids({"rankings": {m: panel.result["rankings"][m] for m in [metric] + others}}, 10)
        mine = {n.clip.id for n in top}
        flagged = {t.item(r, 0).data(Qt.UserRole).id for r in range(10) if t.item(r, 0).data(Qt.UserRole + 1)}
        ranks = {m: {n.clip.id: n.rank for n in panel.result["rankings"][m]} for m in others}
        assert flagged == {i for i in mine & far if any(ranks[m].get(i, 0) > 30 for m in others)}
        flagged_any |= bool(flagged)
        # The legend and the rank agreement are in view, below the table, inside the panel.
        assert panel.legend.isVisible() and "beyond 30th" in panel.legend.text()
        assert f"({len(flagged)} here)" in panel.legend.text()
        assert t.geometry().bottom() < panel.legend.geometry().top() < panel.tau_label.geometry().top()
        assert panel.tau_label.geometry().bottom() <= panel.height()
        tau_text = panel.tau_label.text()
        assert tau_text.startswith("Kendall τ with ")
        for o in others:
            shown = get_metric(o).display_name
            assert (f"({shown})" if " - " in shown else shown) in tau_text
    assert flagged_any  # the demo clips do disagree somewhere, so the mark was checked for real
    # "1 - MS-SSIM" is one term wherever it is named beside another metric.
    assert "(1 - MS-SSIM)" in panel.tau_label.text() and "MSE–1" not in panel.tau_label.toolTip()
    assert panel.tau_label.toolTip().count("\n") == len(panel.taus) and len(panel.taus) == 10


def test_click_loads_b_and_k_is_adjustable(demo_window, qtbot):
    from perceptlab.qt.neighbours_panel import NAME_COL

    w = demo_window
    panel = w.neighbours_panel
    query = _clip(w, "organ_02.flac")
    w.library_panel.select_clip(query.id)
    qtbot.waitUntil(lambda: panel.result is not None and panel.result["query"].id == query.id, timeout=60000)
    panel.set_metric("nlpd")
    top = panel.top("nlpd")
    assert len(top) == 5 and query.id not in [n.clip.id for n in top]
    assert [n.distance for n in top] == sorted(n.distance for n in top)
    rect = panel.table.visualItemRect(panel.table.item(1, NAME_COL))
    qtbot.mouseClick(panel.table.viewport(), Qt.LeftButton, pos=rect.center())
    assert w.slots["B"].id == top[1].clip.id
    panel.k_box.setValue(3)
    assert panel.table.rowCount() == 3 and panel.table.horizontalHeaderItem(4).text() == "Agree"
    # k never asks for more than a large library's quick top list of the shown metric holds.
    from perceptlab.analysis.rankings import QUICK_DEPTH

    assert panel.k_box.maximum() == QUICK_DEPTH
    with pytest.raises(ValueError, match="not in the neighbours panel"):
        panel.set_metric("no-such-metric")


def test_the_shown_metric_is_ranked_first_and_reported_as_it_is_ready(tmp_path, clip_library):
    from perceptlab.audio.features import FeatureConfig
    from perceptlab.library.store import Library
    from perceptlab.analysis.rankings import rank_all

    with Library(clip_library) as lib:
        query = lib.clips()[0]
    planned, order, progress = [], [], []
    res = rank_all(str(clip_library), query, None, FeatureConfig(), first="msssim",
                   on_planned=planned.append, on_metric=lambda m, rows: order.append((m, len(rows))),
                   progress=lambda done, total: progress.append((done, total)))
    assert order[0] == ("msssim", 8) and len(order) == len(planned[0])
    assert list(res["rankings"]) == planned[0]  # the result keeps the registry order
    assert progress == [(i + 1, len(planned[0])) for i in range(len(planned[0]))]


def test_the_bench_library_is_real_distinct_files(tmp_path):
    from perceptlab.library.store import Library
    from perceptlab.qt.bench import build_bench_library

    path = build_bench_library(tmp_path, n=52)  # every demo clip, then four varied copies
    with Library(path) as lib:
        clips = lib.clips()
    assert len(clips) == 52 and all(c.ok for c in clips)
    assert len({c.content_hash for c in clips}) == 52
    assert sum(c.name.endswith("_01.wav") for c in clips) == 4
    with pytest.raises(ValueError, match="at least 2 clips"):
        build_bench_library(tmp_path / "one", n=1)


@pytest.fixture
def long_named_metric():
    """MSE again under a long display name (as an encoder's are), for as long as the test runs."""
    from dataclasses import replace

    from perceptlab.metrics.registry import get_metric, register_metric, unregister_metric

    metric = register_metric(replace(get_metric("mse"), name="mse-long-name",
                                     display_name="Embedding of a long-named encoder (cosine)"))
    yield metric.name
    unregister_metric(metric.name)


def test_a_long_metric_name_does_not_squeeze_the_clip_names(long_named_metric, main_window, qtbot):
    from perceptlab.qt.neighbours_panel import DIST_COL, NAME_COL

    w, panel = main_window, main_window.neighbours_panel
    query = _clip(w, "mid_1.wav")
    w.library_panel.select_clip(query.id)
    qtbot.waitUntil(lambda: panel.result is not None and panel.result["query"].id == query.id, timeout=30000)
    assert long_named_metric in panel.metrics_shown()
    panel.set_metric(long_named_metric)
    t = panel.table
    head = t.horizontalHeaderItem(DIST_COL)
    assert head.text() == "Distance" and "long-named encoder" in head.toolTip()
    assert [t.item(r, DIST_COL).text() for r in range(t.rowCount())] == \
        [f"{n.distance:.4g}" for n in panel.top(long_named_metric)]
    assert _fits(t, "low_0.wav", t.columnWidth(NAME_COL))
    assert panel.metric_box.width() < panel.width() / 2


@pytest.mark.qt
def test_opening_a_library_prepares_its_search_index_in_the_background(qtbot, tmp_path, clip_library):
    from perceptlab.analysis import indexing
    from perceptlab.analysis import neighbours as nb
    from perceptlab.qt.neighbours_panel import QtNeighboursPanel
    from perceptlab.qt.workers import QtTaskRunner

    indexing.update_library_indexes(clip_library)
    indexing.forget()
    nb._SKETCH_SEARCH.clear()
    runner = QtTaskRunner()
    panel = QtNeighboursPanel(runner)
    qtbot.addWidget(panel)
    panel.set_library(str(clip_library))
    qtbot.waitUntil(lambda: len(nb._SKETCH_SEARCH) == 1, timeout=30000)
    (key, search), = nb._SKETCH_SEARCH.items()
    assert key[0].startswith(str(clip_library) + ".indexes") and len(search.lengths) == 9
    assert runner.shutdown(5000)
