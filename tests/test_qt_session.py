"""The listening screen tells the truth: session box, completion summary, authoring dialog, MUSHRA rows."""

from __future__ import annotations

import json
import sqlite3

import pytest

pytest.importorskip("PySide6.QtWidgets")

from PySide6.QtCore import Qt  # noqa: E402

pytestmark = [pytest.mark.qt, pytest.mark.slow]


@pytest.fixture
def window(main_window):
    main_window.central_tabs.setCurrentWidget(main_window.listening_view)
    return main_window


def test_session_box_counts_answers_and_completion_shows_a_summary(window, qtbot):
    view = window.listening_view
    sid = view.create_session("triplet", "ann", n_trials=4, n_catch=1, seed=1)
    n = view.trial.n_trials
    assert n == 5
    assert view.session_box.currentData() == sid
    assert "open · 0/5" in view.session_box.currentText()
    for i in range(n):
        qtbot.keyClick(view, Qt.Key_0)
        qtbot.keyClick(view, Qt.Key_2)  # B: the tentative choice
        qtbot.keyClick(view, Qt.Key_Return)
        assert view.session_box.currentData() == sid
        if i < n - 1:
            assert f"open · {i + 1}/5" in view.session_box.currentText(), view.session_box.currentText()
    assert "completed · 5/5" in view.session_box.currentText()
    # The completion screen: nothing of the last trial stays, a summary says what happened and what next.
    assert view.trial is None
    assert view.choice_label.text() == ""
    assert view.playhead.text() == ""
    assert view.prompt.text() == ""
    assert view.sound_row.count() == 0 and view.rating_grid.count() == 0
    assert not view.next_button.isEnabled()
    assert view.summary.isVisible()
    text = view.summary.text()
    assert "5 answers" in text and "5 trials" in text
    assert "1 catch" in text
    assert f"perceptlab agreement --session {sid}" in text
    assert "Agreement tab" in text
    # Opening the completed session again shows the same summary, not a stale trial.
    view.open_session(sid)
    assert view.trial is None and view.summary.isVisible() and "5 answers" in view.summary.text()


def _row_of(grid, widget) -> int:
    return grid.getItemPosition(grid.indexOf(widget))[0]


def test_mushra_rows_put_each_slider_beside_its_play_button_with_its_score(window, qtbot):
    view = window.listening_view
    view.create_session("mushra", "bo", n_items=1, must_play=True, recipes=("white_noise:snr_db=10",))
    t = view.trial
    labels = [s.label for s in t.candidates]
    assert len(labels) == 4  # hidden reference, two anchors, one condition
    grid = view.rating_grid
    qtbot.waitUntil(lambda: all(s.isVisible() and s.width() > 100 for s in view.sliders.values()), timeout=5000)
    for lab in labels:
        button, slider, value = view.sound_buttons[lab], view.sliders[lab], view.value_labels[lab]
        # One row: play button, slider, score.
        assert _row_of(grid, button) == _row_of(grid, slider) == _row_of(grid, value)
        assert abs(button.geometry().center().y() - slider.geometry().center().y()) <= 4
        assert button.geometry().right() < slider.geometry().left() < slider.geometry().right() \
            < value.geometry().left()
        assert value.text() == "not rated"
    # The value label follows the slider, mouse or keys, with the band name.
    first = labels[0]
    view.sliders[first].setValue(72)
    assert view.value_labels[first].text() == "72 · Good"
    view.sliders[first].setValue(80)
    assert view.value_labels[first].text() == "80 · Excellent"  # a boundary belongs to the upper band
    view.sliders[first].setValue(19)
    assert view.value_labels[first].text() == "19 · Bad"
    qtbot.keyClick(view, Qt.Key_2)
    for _ in range(9):
        qtbot.keyClick(view, Qt.Key_K)           # +45
    qtbot.keyClick(view, Qt.Key_J, Qt.ShiftModifier)  # -1
    assert view.sliders[labels[1]].value() == 44
    assert view.value_labels[labels[1]].text() == "44 · Fair"
    assert view.value_labels[first].text() == "19 · Bad"  # the others stay
    # Switching keeps the playback position (with or without an audio device).
    view.engine.seek(0.5)
    qtbot.keyClick(view, Qt.Key_3)
    assert view.engine.active_slot == labels[2] and view.engine.position == pytest.approx(0.5, abs=0.05)
    assert view.sound_buttons[labels[2]].isChecked() and not view.sound_buttons[labels[1]].isChecked()
    qtbot.keyClick(view, Qt.Key_R)
    assert view.engine.active_slot == "reference" and view.engine.position == pytest.approx(0.5, abs=0.05)
