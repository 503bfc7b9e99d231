"""The main window's library browser and spectrogram, driven as a user would."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6.QtWidgets")

from PySide6.QtCore import Qt  # noqa: E402


pytestmark = pytest.mark.qt


@pytest.fixture
def window(main_window):
    return main_window


def test_table_lists_clips_and_filters(window, qtbot):
    panel = window.library_panel
    assert panel.proxy.rowCount() == 9
    qtbot.keyClicks(panel.search, "mid_")
    assert panel.proxy.rowCount() == 3
    panel.search.clear()
    panel.label_filter.setCurrentText("high")
    assert {c.label for c in panel.visible_clips()} == {"high"} and panel.proxy.rowCount() == 3
    panel.label_filter.setCurrentIndex(0)
    # Sorting by duration (click the header): longest last.
    panel.table.horizontalHeader().sectionClicked.emit(2)
    panel.table.sortByColumn(2, Qt.AscendingOrder)
    durations = [c.duration for c in panel.visible_clips()]
    assert durations == sorted(durations)


def test_selecting_a_clip_shows_its_spectrogram(window, qtbot):
    panel = window.library_panel
    clip = next(c for c in panel.model.clips() if c.name == "low_1.wav")
    panel.table.setFocus()
    assert panel.select_clip(clip.id)
    assert window.spectrogram.has_image() and not window.spectrogram.placeholder.isVisible()
    assert "low_1.wav" in window.spectrogram.caption.text()
    img = window.spectrogram.image.image
    assert img.shape == (128, 1 + int(1.25 * 22050) // 512)
    # Keyboard: Down moves to the next clip and its spectrogram follows.
    qtbot.keyClick(panel.table, Qt.Key_Down)
    assert "low_1.wav" not in window.spectrogram.caption.text()
    # Hover readout at a point inside the image names time, Hz and dB.
    text = window.spectrogram.readout_at(0.5, 20.5)
    assert "s" in text and "Hz" in text and "dB" in text


def test_cache_miss_is_computed_in_the_background(window, qtbot):
    clip = window.library_panel.model.clips()[0]
    window.library.drop_features(clip.content_hash)
    window.library_panel.select_clip(clip.id)
    assert "computing" in window.spectrogram.caption.text()
    qtbot.waitUntil(window.spectrogram.has_image, timeout=10000)
    assert window.library.get_features(clip.content_hash, window.config.hash) is not None


def test_background_import_with_progress(window, qtbot, tmp_path):
    from conftest import write_clip

    new = tmp_path / "more"
    for i in range(4):
        write_clip(new / "extra" / f"e{i}.wav", seconds=0.5, freq=300 + 50 * i)
    task = window.import_paths([str(new)])
    assert task is not None and window.progress.isVisible()
    qtbot.waitUntil(lambda: window._import_task is None, timeout=20000)
    assert window.library_panel.model.rowCount() == 13
    assert "imported 4" in window.status_label.text()
    assert not window.progress.isVisible()


def test_colormap_and_levels(window):
    view = window.spectrogram
    view.set_colormap("magma")
    assert view.cmap_box.currentText() == "magma"
    view.set_levels(-60.0, 0.0)
    assert view.levels() == pytest.approx((-60.0, 0.0))


def test_layout_persists(qtbot, tmp_path, clip_tree):
    from perceptlab.qt.main_window import QtMainWindow

    lib_path = tmp_path / "lib.sqlite"
    w = QtMainWindow(library_path=lib_path)
    qtbot.addWidget(w)
    w.show()
    w.library_dock.setFloating(True)
    w.spectrogram.set_colormap("cividis")
    w.close()
    w2 = QtMainWindow(library_path=lib_path)
    qtbot.addWidget(w2)
    assert w2.library_dock.isFloating()
    assert w2.spectrogram.cmap_box.currentText() == "cividis"
    w2.close()


def test_demo_library_is_imported_on_first_run(tmp_path, monkeypatch):
    from perceptlab.library.demo import demo_dir, ensure_demo_library

    assert demo_dir().is_dir(), "the demo clips ship in assets/demo"
    from perceptlab.library.demo import shipped_general_encoders

    lib = ensure_demo_library(tmp_path / "first.sqlite")
    try:
        n = lib.count()
        assert n >= 48 and len(lib.labels()) >= 6
        # The general encoders ship, and the first run embeds the demo clips with each.
        names = {m["name"] for m in lib.models()}
        assert names == {"general-mse", "general-nlpd", "general-msssim"}
        assert [p.stem for p in shipped_general_encoders()] == ["general-mse", "general-msssim", "general-nlpd"]
        for m in lib.models():
            assert len(lib.get_embeddings(m["model_hash"])) == n
    finally:
        lib.close()
    lib = ensure_demo_library(tmp_path / "first.sqlite")  # second run: nothing re-imported
    assert lib.count() == n
    lib.close()


def test_an_empty_spectrogram_view_says_what_to_do(qtbot):
    import numpy as np

    from perceptlab.qt.spectrogram_view import QtSpectrogramView

    view = QtSpectrogramView()
    qtbot.addWidget(view)
    assert view.placeholder.isVisible() and not view.has_image()
    (x0, x1), (y0, y1) = view.plot.getViewBox().viewRange()
    assert (x0, x1, y0, y1) == (0.0, 5.0, 0.0, 128.0)  # seconds and mel bands, not a unit square
    view.set_image(np.full((128, 40), 0.5, np.float32))
    assert view.has_image() and not view.placeholder.isVisible()
    view.set_image(None)
    assert view.placeholder.isVisible()


def test_every_column_shows_and_sorts_its_own_value(qtbot):
    """The model formats only the cell asked for; each column still sorts by its value."""
    from perceptlab.library.store import Clip
    from perceptlab.qt.library_panel import QtClipFilterModel, QtClipTableModel

    def clip(i, duration, lufs, ok=True):
        return Clip(id=i, path=f"/x/c{i}.flac", name=f"c{i}.flac", content_hash=f"h{i}", label=f"l{3 - i}",
                    duration=duration, sample_rate=44100 if i % 2 else 22050, channels=1 + i % 2,
                    loudness=lufs, size=1, mtime=0.0, format="FLAC",
                    error=None if ok else "not audio", imported_at=0.0)

    clips = [clip(0, 10.5, -20.0), clip(1, 2.25, None), clip(2, 9.0, -31.5, ok=False), clip(3, 100.0, -14.0)]
    assert [c.ok for c in clips] == [True, True, False, True]
    model = QtClipTableModel()
    model.set_clips(clips)
    shown = [[model.data(model.index(r, c)) for c in range(len(model.COLUMNS))] for r in range(2)]
    assert shown[0][:5] == ["c0.flac", "l3", "10.50 s", "22.05 kHz", "1"]
    assert shown[1][2:5] == ["2.25 s", "44.1 kHz", "2"] and shown[0][6] == "ok"
    assert model.data(model.index(2, 6)) == "failed"
    assert model.data(model.index(0, 2), Qt.ItemDataRole.TextAlignmentRole) == int(Qt.AlignRight | Qt.AlignVCenter)
    assert model.headerData(5, Qt.Horizontal) == "LUFS"
    proxy = QtClipFilterModel()
    proxy.setSourceModel(model)

    def order(col):
        proxy.sort(col, Qt.AscendingOrder)
        return [proxy.data(proxy.index(r, 0)) for r in range(proxy.rowCount())]

    assert order(2) == ["c1.flac", "c2.flac", "c0.flac", "c3.flac"]  # by seconds, not as text
    assert order(5) == ["c1.flac", "c2.flac", "c0.flac", "c3.flac"]  # no loudness first
    assert order(1) == ["c3.flac", "c2.flac", "c1.flac", "c0.flac"]
    assert order(6)[-1] == "c2.flac"  # failed clips last
