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
    assert f"{broken.name} could not be decoded: {broken.error}" in panel.title.text()
    # ... and a good clip afterwards is ranked again.
    w.library_panel.select_clip(good.id)
    qtbot.waitUntil(lambda: panel.result is not None and panel.result["query"].id == good.id, timeout=30000)
    assert _shown_clip_ids(panel) and "could not be decoded" not in panel.title.text()
