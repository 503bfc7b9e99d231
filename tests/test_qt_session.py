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
