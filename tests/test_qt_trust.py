"""The main window tells the truth about what is selected: the player's label,
the loop, failed clips, import summaries, filtered counts, progress with
units, the layout and help."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("PySide6.QtWidgets")

from PySide6.QtCore import Qt  # noqa: E402

from audio_sink import sink_path  # noqa: E402

pytestmark = pytest.mark.qt

from conftest import BROKEN, import_tree  # noqa: E402


@pytest.fixture
def clip_library(tmp_path, clip_tree):
    """The ``clip_tree`` library plus one file that cannot be decoded (overrides conftest's)."""
    return import_tree(tmp_path, clip_tree, broken=True)


@pytest.fixture
def window(main_window):
    return main_window


def _clip(window, name):
    return next(c for c in window.library_panel.model.clips() if c.name == name)


def _select(window, qtbot, name, wait_audio=True):
    clip = _clip(window, name)
    assert window.library_panel.select_clip(clip.id)
    if wait_audio:
        qtbot.waitUntil(window.audio_ready, timeout=5000)
    return clip


# -- A: the player's label ---------------------------------------------------------------
def test_the_player_label_follows_the_selected_clip_and_slot(window, qtbot):
    _select(window, qtbot, "low_0.wav")  # 1.00 s
    window.player.seek(0.5)
    assert window.player.time_label.text().split() == ["A", "0.50", "/", "1.00", "s"]
    _select(window, qtbot, "mid_1.wav")  # 1.25 s: the label says so without a key press
    assert window.player.time_label.text().split() == ["A", "0.00", "/", "1.25", "s"]
    window.set_slot("B", _clip(window, "high_2.wav"))  # 1.50 s
    qtbot.waitUntil(lambda: window.audio_ready("B"), timeout=5000)
    window.player.seek(0.3)
    qtbot.keyClick(window, Qt.Key_Tab)  # stopped: B is lit, shown, and named by the label
    assert window.player.b_button.isChecked() and "high_2.wav" in window.spectrogram.caption.text()
    assert window.player.time_label.text().split() == ["B", "0.30", "/", "1.50", "s"]
    qtbot.keyClick(window, Qt.Key_1)
    assert window.player.time_label.text().split() == ["A", "0.30", "/", "1.25", "s"]


def test_the_label_names_the_clip_duration_before_its_audio_is_decoded(window, qtbot):
    _select(window, qtbot, "low_0.wav")
    clip = _clip(window, "high_1.wav")  # 1.25 s
    window.library_panel.select_clip(clip.id)
    # Straight after the selection, whether or not the audio is in yet.
    assert window.player.time_label.text().split()[-2:] == ["1.25", "s"]
    qtbot.waitUntil(window.audio_ready, timeout=5000)


# -- B: the loop belongs to the clip it was drawn on ---------------------------------------
@pytest.mark.audio
def test_selecting_another_clip_clears_the_loop(window, qtbot):
    sink_path()  # the loop is a playback control: off (greyed) without an audio device
    qtbot.waitUntil(lambda: window.player.available, timeout=10000)
    _select(window, qtbot, "mid_2.wav")
    window.player.seek(0.2)
    qtbot.keyClick(window, Qt.Key_A)
    window.player.seek(0.9)
    qtbot.keyClick(window, Qt.Key_B)
    qtbot.keyClick(window, Qt.Key_Space, Qt.ShiftModifier)
    assert window.spectrogram.loop() == pytest.approx((0.2, 0.9), abs=1e-3)
    assert window.player.engine.loop is not None and window.player.loop_box.isChecked()
    _select(window, qtbot, "low_1.wav")
    assert window.spectrogram.loop() is None, "the loop is still drawn on the next clip"
    assert window.player.engine.loop is None, "the loop is still active on the next clip"
    assert not window.player.loop_box.isChecked()


# -- C: a clip that failed to import ----------------------------------------------------------
def test_a_failed_clip_is_marked_in_the_list(window):
    model = window.library_panel.model
    row = model.row_of(_clip(window, BROKEN).id)
    good = model.row_of(_clip(window, "low_0.wav").id)
    name_cell = model.index(row, 0)
    assert model.data(name_cell, Qt.DecorationRole) is not None
    assert model.data(model.index(good, 0), Qt.DecorationRole) is None
    assert model.data(name_cell, Qt.ForegroundRole) is not None
    reason = _clip(window, BROKEN).error
    assert reason and reason in model.data(name_cell, Qt.ToolTipRole)
    assert "failed to import" in model.data(name_cell, Qt.ToolTipRole)


def test_selecting_a_failed_clip_unloads_it_and_says_why(window, qtbot):
    _select(window, qtbot, "low_0.wav")
    window.set_slot("B", _clip(window, "high_0.wav"))
    qtbot.waitUntil(lambda: window.compare_panel.result is not None, timeout=30000)
    assert window.player.engine.has("A")
    broken = _select(window, qtbot, BROKEN, wait_audio=False)
    assert not window.player.engine.has("A"), "Space would play the previously selected clip"
    qtbot.keyClick(window, Qt.Key_Space)
    assert not window.player.engine.is_playing
    assert f"{BROKEN} failed to import: {broken.error}" in window.status_label.text()
    placeholder = window.spectrogram.placeholder
    assert placeholder.isVisible()
    assert placeholder.toPlainText() == f"{BROKEN} could not be decoded: {broken.failure}"
    assert "cannot be decoded" not in placeholder.toPlainText()  # the reason is not said twice
    # The reason wraps inside the plot rather than running off both sides.
    assert 0 < placeholder.textItem.textWidth() <= window.spectrogram.pane("A").viewbox().width()
    assert window.compare_panel.result is None and window.compare_panel.table.rowCount() == 0
    assert "low_0.wav" not in window.compare_panel.title.text()
    assert window.player.time_label.text().split()[-2:] == ["0.00", "s"]
    # A good clip afterwards: the hint is the ordinary one again when its image is missing.
    _select(window, qtbot, "low_1.wav")
    assert window.spectrogram.has_image()
    window.spectrogram.set_image(None)
    assert "could not be decoded" not in placeholder.toPlainText() or not placeholder.isVisible()


# -- F: the import summary stays reachable; filtered counts ---------------------------------------
def test_the_import_summary_can_be_opened_after_matrix_progress(window, qtbot, tmp_path):
    from conftest import write_clip

    new = tmp_path / "more"
    write_clip(new / "extra" / "e0.wav", seconds=0.5, freq=300)
    for i in range(2):
        (new / "extra" / f"bad{i}.wav").write_bytes(b"RIFF0000WAVEjunk" * (i + 1))
    task = window.import_paths([str(new)])
    said = []  # the progress text after each report (this slot runs after the window's)
    task.signals.progress.connect(lambda _d, _t: said.append(window.progress_label.text()))
    qtbot.waitUntil(lambda: window._import_task is None, timeout=20000)
    assert said and said[-1].startswith("importing: 3 / 3 files"), said
    assert window.progress_label.text() == ""
    assert "imported 1" in window.status_label.text()
    window.analysis.progress.emit("nlpd", 3, 10)  # a matrix starts computing
    assert "imported 1" in window.status_label.text()
    button = window.failed_button
    assert button.isVisible() and button.text().startswith("3 failed")  # 2 now + 1 from before
    button.click()
    dialog = window.failures_dialog
    assert dialog.isVisible()
    rows = {dialog.table.item(r, 0).text(): dialog.table.item(r, 1).text() for r in range(dialog.table.rowCount())}
    assert {os.path.basename(p) for p in rows} == {"bad0.wav", "bad1.wav", BROKEN}
    assert all(reason for reason in rows.values())
    dialog.close()
    # The library list can show only the failed clips.
    window.library_panel.failed_only.setChecked(True)
    assert {c.name for c in window.library_panel.visible_clips()} == {"bad0.wav", "bad1.wav", BROKEN}
    window.library_panel.failed_only.setChecked(False)
    assert window.library_panel.proxy.rowCount() == 13


def test_the_status_bar_counts_the_clips_shown_while_filtered(window, qtbot):
    assert window.status_label.text().startswith("9 clips")
    qtbot.keyClicks(window.library_panel.search, "low")
    assert window.status_label.text().startswith("3 of 9 clips")
    window.library_panel.search.clear()
    assert window.status_label.text().startswith("9 clips")
    window.library_panel.label_filter.setCurrentText("high")
    assert window.status_label.text().startswith("3 of 9 clips")


# -- G: loop on, play starts in the loop ----------------------------------------------------------
@pytest.mark.audio
def test_with_loop_on_play_starts_at_the_loop_start(window, qtbot):
    sink_path()
    assert window.player.available, window.player.unavailable_reason
    _select(window, qtbot, "mid_2.wav")  # 1.50 s
    window.player.seek(0.8)
    qtbot.keyClick(window, Qt.Key_A)
    window.player.seek(1.2)
    qtbot.keyClick(window, Qt.Key_B)
    qtbot.keyClick(window, Qt.Key_Space, Qt.ShiftModifier)
    window.player.seek(0.2)  # the playhead outside the loop
    assert window.player.play()
    assert 0.8 - 1e-3 <= window.player.engine.position <= 1.2
    window.player.stop()
    assert window.player.engine.position == pytest.approx(0.8, abs=1e-3)  # Esc rewinds to the loop start


# -- H: progress with units ------------------------------------------------------------------------
def test_progress_text_has_units_thousands_and_time_left():
    from perceptlab.progress_text import ProgressClock, progress_text

    assert progress_text("computing NLPD matrix", 312, 1185, "rows") == "computing NLPD matrix: 312 / 1,185 rows"
    now = [100.0]
    clock = ProgressClock("computing NLPD matrix", "rows", clock=lambda: now[0])
    assert clock.update(0, 1185) == "computing NLPD matrix: 0 / 1,185 rows"  # no guess yet
    now[0] += 0.5
    assert "left" not in clock.update(2, 1185)  # too few steps to tell the pace
    now[0] += 9.5
    # 312 rows in 10 s: 873 rows left take 28 s.
    assert clock.update(312, 1185) == "computing NLPD matrix: 312 / 1,185 rows · 0:28 left"
    assert progress_text("importing", 12, 0, "files") == "importing: 12 files"


def test_main_window_progress_names_the_matrix_rows_and_keeps_the_status(window):
    status = window.status_label.text()
    window.analysis.progress.emit("nlpd", 0, 1185)
    window.analysis.progress.emit("nlpd", 312, 1185)
    assert window.progress_label.text().startswith("computing NLPD matrix: 312 / 1,185 rows")
    assert window.progress.isVisible() and window.progress.maximum() == 1185
    assert window.status_label.text() == status


def _import_piped(tmp_path, clip_tree, env_extra):
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-m", "perceptlab.cli", "import", str(clip_tree),
                          "--library", str(tmp_path / f"piped{len(env_extra)}.sqlite")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    return [line for line in out.stderr.splitlines() if line.startswith("importing")]


def test_cli_import_piped_prints_count_lines(tmp_path, clip_tree):
    # Every few seconds (here: at every file), a line with the count and the unit.
    lines = _import_piped(tmp_path, clip_tree, {"PERCEPTLAB_PROGRESS_EVERY": "0"})
    counts = [int(line.split(":")[1].split("/")[0]) for line in lines]
    assert counts == list(range(10)), lines
    assert all(line.split(" · ")[0].endswith("/ 9 files") for line in lines)
    # By default: the start and the end at least, never one line per file for a short import.
    lines = _import_piped(tmp_path, clip_tree, {})
    assert lines[0] == "importing: 0 / 9 files" and lines[-1].startswith("importing: 9 / 9 files")
    assert len(lines) < 10


def test_cli_progress_bar_on_a_terminal_has_units_and_time_left(monkeypatch):
    import io

    from perceptlab.cli import common as cli

    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    bar = cli.ProgressBar("importing", stream=stream, unit="files", piped_every=5.0)
    now = [0.0]
    bar.clock.clock = lambda: now[0]
    bar.clock._first = None
    for done in range(0, 1201, 100):
        now[0] += 1.0
        bar._last = -1.0  # every report drawn
        bar(done, 1200)
    text = stream.getvalue()
    assert "\r" in text and "1,200/1,200 files" in text
    assert "0:07 left" in text.split("\r")[-8]  # 500 of 1,200 files after 5 s: 7 s left


# -- H: the reconstructions' player ------------------------------------------------------------------
@pytest.mark.audio
def test_play_reconstruction_shows_a_playhead_and_stops(window, qtbot):
    from pathlib import Path

    sink_path()
    ckpt = Path(__file__).resolve().parents[1] / "assets" / "models" / "demo-nlpd.pt"
    view = window.recon_view
    window._on_reconstruct(str(ckpt))
    assert window.recon_dock.isVisible()
    qtbot.waitUntil(lambda: view.result is not None, timeout=60000)
    assert not view.stop_button.isEnabled() and view.playhead() is None
    seen = []  # (position, playhead shown) at each tick
    view.position_changed.connect(lambda pos: seen.append((pos, view.playhead())))
    view.play(0, "recons")
    qtbot.waitUntil(lambda: len(seen) > 0, timeout=60000)
    assert "reconstruction" in view.now_playing.text() or view.playing is None
    qtbot.waitUntil(lambda: view.playing is None, timeout=30000)  # played to its end
    assert all(head == pytest.approx(pos) for pos, head in seen)
    positions = [pos for pos, _head in seen]
    assert positions == sorted(positions) and positions[-1] > 0.5
    assert view.playhead() is None and not view.stop_button.isEnabled()
    # Stop while it plays (the test sink plays faster than real time: it may be over already).
    view.last_audio = None
    view.play(1, "inputs")
    qtbot.waitUntil(lambda: view.last_audio is not None, timeout=60000)
    view.stop_button.click()
    assert not view.engine.is_playing and view.playhead() is None and not view.stop_button.isEnabled()
    assert view.now_playing.text() == ""


# -- I: the layout -------------------------------------------------------------------------------------
def _right_area(window, dock):
    return window.dockWidgetArea(dock)


def test_the_default_layout_fits_1280x800(window, qtbot):
    window.resize(1280, 800)
    window.reset_layout()
    qtbot.wait(50)
    assert window.width() == 1280, "a page or panel asks for more than 1280 px"
    sizes = window.default_dock_sizes()
    assert abs(window.library_dock.width() - sizes["library"]) <= 12
    assert window.library_dock.width() >= 290
    search = window.library_panel.search
    assert search.width() >= search.fontMetrics().horizontalAdvance(search.placeholderText())
    assert window.compare_panel.graphics.height() >= 140  # the difference map can be read
    assert window.central_tabs.width() >= 500
    for tab in range(window.central_tabs.count()):  # no page widens the window
        window.central_tabs.setCurrentIndex(tab)
        qtbot.wait(10)
        assert window.width() == 1280, window.central_tabs.tabText(tab)
    window.central_tabs.setCurrentIndex(0)


def test_view_reset_layout_restores_the_default_docks(window, qtbot):
    window.resize(1280, 800)
    window.reset_layout()
    qtbot.wait(50)
    default_width = window.library_dock.width()
    default_neighbours = window.neighbours_dock.height()
    window.library_dock.setFloating(True)
    window.neighbours_dock.close()
    window.addDockWidget(Qt.LeftDockWidgetArea, window.compare_dock)
    action = next(a for a in window.view_menu.actions() if a.text().replace("&", "") == "Reset layout")
    action.trigger()
    qtbot.wait(50)
    assert not window.library_dock.isFloating() and window.library_dock.isVisible()
    assert window.dockWidgetArea(window.library_dock) == Qt.LeftDockWidgetArea
    assert window.neighbours_dock.isVisible()
    for dock in (window.neighbours_dock, window.compare_dock, window.matrix_dock, window.map_dock):
        assert window.dockWidgetArea(dock) == Qt.RightDockWidgetArea
    assert abs(window.library_dock.width() - default_width) <= 12
    assert abs(window.neighbours_dock.height() - default_neighbours) <= 12
    assert not window.recon_dock.isVisible()


def test_reconstructions_do_not_squeeze_the_other_panels(window, qtbot):
    window.resize(1280, 800)
    window.reset_layout()
    qtbot.wait(50)
    before = (window.library_dock.width(), window.neighbours_dock.height(), window.neighbours_dock.width())
    # A result with four rows of images, as a trained encoder gives.
    import numpy as np

    from perceptlab.audio.features import FeatureConfig

    clips = window.library_panel.model.clips()[:4]
    images = np.random.default_rng(0).uniform(0, 1, (4, 128, 128)).astype(np.float32)
    window.recon_dock.show()
    window.recon_dock.raise_()
    window.recon_view._on_result({"clips": clips, "inputs": images, "recons": images, "config": FeatureConfig(),
                                  "name": "encoder"})
    qtbot.wait(100)
    after = (window.library_dock.width(), window.neighbours_dock.height(), window.neighbours_dock.width())
    assert all(abs(a - b) <= 12 for a, b in zip(after, before)), (before, after)
    assert window.width() == 1280 and window.height() == 800
    window.recon_dock.close()
    qtbot.wait(50)
    after = (window.library_dock.width(), window.neighbours_dock.height(), window.neighbours_dock.width())
    assert all(abs(a - b) <= 12 for a, b in zip(after, before)), (before, after)


def test_an_older_saved_layout_is_not_restored(qtbot, tmp_path):
    from perceptlab.qt.main_window import QtMainWindow
    from perceptlab.qt.window_layout import settings

    w = QtMainWindow(library_path=tmp_path / "a.sqlite")
    qtbot.addWidget(w)
    w.library_dock.hide()
    old_state = w.saveState()  # version 0: what older versions saved
    w.close()
    settings().setValue("window/state", old_state)
    w2 = QtMainWindow(library_path=tmp_path / "a.sqlite")
    qtbot.addWidget(w2)
    w2.show()
    qtbot.waitExposed(w2)
    assert w2.library_dock.isVisible()
    w2.library_dock.hide()
    w2.close()  # saved with the current version: restored
    w3 = QtMainWindow(library_path=tmp_path / "a.sqlite")
    qtbot.addWidget(w3)
    w3.show()
    qtbot.waitExposed(w3)
    assert not w3.library_dock.isVisible()
    w3.close()


# -- J: help --------------------------------------------------------------------------------------------
def test_keyboard_shortcuts_lists_every_installed_shortcut(window, qtbot):
    from PySide6.QtGui import QAction, QKeySequence, QShortcut

    help_menu = next(m.menu() for m in window.menuBar().actions() if m.text().replace("&", "") == "Help")
    action = next(a for a in help_menu.actions() if a.text().replace("&", "") == "Keyboard shortcuts")
    action.trigger()
    dialog = window.shortcuts_dialog
    assert dialog.isVisible()
    shown = {key for _where, key in dialog.keys()}
    installed = {sc.key().toString(QKeySequence.NativeText) for sc in window.findChildren(QShortcut)}
    installed |= {seq.toString(QKeySequence.NativeText) for a in window.findChildren(QAction) for seq in a.shortcuts()}
    installed.discard("")
    assert installed - shown == set()
    assert len(installed) >= 25  # the player's, the listening screen's, the menus'
    rows = {(w, k): dialog.table.item(r, 2).text() for r, (w, k) in enumerate(dialog.keys())}
    assert "play / pause" in rows[("Main window", "Space")]
    assert "reference" in rows[("Listening test", "0")]
    assert all(text and text != "—" for text in rows.values()), [k for k, t in rows.items() if t == "—"]


def test_documentation_opens_the_local_readme(window, monkeypatch):
    from pathlib import Path

    from PySide6.QtGui import QDesktopServices

    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(lambda url: opened.append(url) or True))
    help_menu = next(m.menu() for m in window.menuBar().actions() if m.text().replace("&", "") == "Help")
    docs = next(a.menu() for a in help_menu.actions() if a.menu() is not None)
    titles = [a.text() for a in docs.actions()]
    assert "Training encoders" in titles
    next(a for a in docs.actions() if a.text() == "Training encoders").trigger()
    url = opened[-1]
    assert url.isLocalFile() and url.toLocalFile().endswith("README.md") and url.fragment() == "training-encoders"
    readme = Path(url.toLocalFile()).read_text(encoding="utf-8")
    # Every section offered is a heading of the README.
    import re

    anchors = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", readme, flags=re.M)}
    from perceptlab.qt.window_menus import README_SECTIONS

    assert {a for _t, a in README_SECTIONS if a} <= anchors


# -- the A/B panes and the map follow the selection ---------------------------------------
def test_the_ab_panes_show_the_clips_in_a_and_b_and_the_map_rings_the_selection(window, qtbot):
    view = window.spectrogram
    view.set_panes(True)
    a = _select(window, qtbot, "low_0.wav")
    b = _clip(window, "mid_1.wav")
    window.set_slot("B", b)
    qtbot.waitUntil(lambda: view._slots["A"].db is not None and view._slots["B"].db is not None, timeout=10000)
    qtbot.waitUntil(lambda: view._slots["A"].samples is not None and view._slots["B"].samples is not None,
                    timeout=10000)
    assert view._slots["A"].caption.startswith(f"A: {a.name}") and view._slots["B"].caption.startswith(f"B: {b.name}")
    assert view._slots["B"].duration() == pytest.approx(b.duration, abs=0.05)
    window.player.select("B")
    assert view.active_slot() == "B"
    # A new B empties its pane at once: nothing of the old clip is left to see.
    window.set_slot("B", _clip(window, "high_0.wav"))
    assert view._slots["B"].samples is None and view._slots["B"].caption.startswith("B: high_0.wav")
    assert window.map_view.selected_clip_id == a.id


def test_an_import_brings_the_search_indexes_up_to_date_in_the_background(window, qtbot, tmp_path):
    from conftest import write_clip
    from perceptlab.analysis.indexing import index_status

    new = tmp_path / "more"
    for i in range(2):
        write_clip(new / "extra" / f"e{i}.wav", seconds=0.6, freq=300 + 50 * i)
    window.import_paths([str(new)])
    qtbot.waitUntil(lambda: window._import_task is None, timeout=20000)
    assert window.index_task is not None  # started by the import, off the GUI thread
    qtbot.waitUntil(lambda: window.index_task is None, timeout=60000)
    good = sum(1 for c in window.library.clips() if c.ok)
    status = index_status(window.library.path, window.config)
    assert status["images"]["alive"] == good, status


def test_with_playback_off_the_reason_stays_and_the_loop_key_does_nothing(window, qtbot):
    window.player.set_audio_available(False, "no audio output device")
    _select(window, qtbot, "low_0.wav", wait_audio=False)
    window.set_slot("B", _clip(window, "high_0.wav"))
    qtbot.waitUntil(lambda: window.audio_ready("B"), timeout=10000)
    window.player.select("B")
    assert window.player.message.text() == "Playback off: no audio output device"
    window.player.toggle_loop()
    assert not window.player.loop_box.isChecked()
    assert not window.player.meter.isEnabled()


def test_the_first_window_does_not_wait_for_torch(tmp_path):
    """The GUI thread imports no torch (or scipy, scikit-learn, matplotlib) while it builds and
    paints the window: the metric registry loads in a worker."""
    code = (
        "import sys, threading\n"
        "HEAVY = ('torch', 'torchaudio', 'scipy', 'sklearn', 'matplotlib')\n"
        "seen = set()\n"
        "class Watch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name in HEAVY and threading.current_thread() is threading.main_thread():\n"
        "            seen.add(name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Watch())\n"
        "from perceptlab.qt.app import create_app\n"
        "from perceptlab.qt.main_window import QtMainWindow\n"
        "app = create_app()\n"
        f"w = QtMainWindow(library_path={str(tmp_path / 'lib.sqlite')!r})\n"
        "w.show(); app.processEvents(); w.grab()\n"
        "print('gui thread imported:', sorted(seen))\n"
        "import os; os._exit(0)\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "gui thread imported: []" in out.stdout, out.stdout + out.stderr[-2000:]
