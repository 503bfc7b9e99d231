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
    assert view.commands.isVisible()
    assert f"perceptlab agreement --session {sid} --library {view.library.path}" in view.commands.toPlainText()
    assert "Agreement tab" in text
    # Opening the completed session again shows the same summary, not a stale trial.
    view.open_session(sid)
    assert view.trial is None and view.summary.isVisible() and "5 answers" in view.summary.text()


def _row_of(grid, widget) -> int:
    return grid.getItemPosition(grid.indexOf(widget))[0]


def test_mushra_rows_put_each_slider_beside_its_play_button_with_its_score(window, qtbot, monkeypatch):
    view = window.listening_view
    view.create_session("mushra", "bo", n_items=1, must_play=True, recipes=("white_noise:snr_db=10",))
    qtbot.waitUntil(view.sounds_ready, timeout=10000)  # decoded off the GUI thread
    t = view.trial
    labels = [s.label for s in t.candidates]
    assert len(labels) == 4  # hidden reference, two anchors, one condition
    grid = view.rating_grid

    def one_row_each():
        for lab in labels:
            button, slider, value = view.sound_buttons[lab], view.sliders[lab], view.value_labels[lab]
            assert button.isVisible() and slider.isVisible() and value.isVisible()
            # One row: play button, slider, score, left to right at the same height.
            assert _row_of(grid, button) == _row_of(grid, slider) == _row_of(grid, value)
            assert abs(button.geometry().center().y() - slider.geometry().center().y()) <= 4
            assert abs(value.geometry().center().y() - slider.geometry().center().y()) <= 4
            assert button.geometry().right() < slider.geometry().left() < slider.geometry().right() \
                < value.geometry().left()
            assert value.text() == "not rated"

    # The rows are laid out once the new widgets are shown (a queued show): wait for that layout.
    qtbot.waitUntil(one_row_each, timeout=5000)
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
    # Switching keeps the playback position (with or without an audio device). Paused first:
    # "2" started playback, and a clip that played to its end (a slow machine) starts again
    # at 0 on the next key, which is right, but not what this checks.
    # Where playback starts is read as play() is called: once the stream runs, the device's
    # buffer (ALSA's file sink takes most of a second at once) has moved the position on.
    engine, starts = view.engine, []
    play = engine.play
    monkeypatch.setattr(engine, "play", lambda: (starts.append((engine.active_slot, engine.position)), play()))
    engine.pause()
    engine.seek(0.5)
    qtbot.keyClick(view, Qt.Key_3)  # plays from where "2" stood
    assert starts[-1][0] == labels[2] and starts[-1][1] == pytest.approx(0.5, abs=0.01)
    assert view.sound_buttons[labels[2]].isChecked() and not view.sound_buttons[labels[1]].isChecked()
    engine.pause()
    here = engine.position
    qtbot.keyClick(view, Qt.Key_R)
    assert starts[-1][0] == "reference" and starts[-1][1] == pytest.approx(here, abs=0.01)


def _stored(lib_path, session_id):
    conn = sqlite3.connect(str(lib_path))
    try:
        design, listener, config = conn.execute(
            "SELECT design, listener, config FROM listening_sessions WHERE id = ?", (session_id,)).fetchone()
        n = conn.execute("SELECT COUNT(*) FROM listening_trials WHERE session_id = ?", (session_id,)).fetchone()[0]
    finally:
        conn.close()
    return design, listener, json.loads(config), n


def _search_and_check(dlg, text):
    dlg.search_edit.setText(text)
    dlg.check_shown.click()
    dlg.search_edit.clear()


def test_dialog_fields_become_the_stored_triplet_plan(window, qtbot, clip_library):
    from perceptlab.listening.create import TripletPlan
    from perceptlab.library.store import Library

    view = window.listening_view
    qtbot.mouseClick(view.new_button, Qt.LeftButton)
    dlg = view.session_dialog
    assert dlg is not None and dlg.isVisible() and dlg.windowTitle() == "New listening session"
    # Empty listener: said, and no way to create.
    dlg.listener_edit.setText("   ")
    assert any(e.startswith("Listener:") for e in dlg.errors())
    assert "Listener:" in dlg.errors_label.text() and not dlg.create_button.isEnabled()
    # Typing in the dialog types: the listening screen's keys (digits, r, a, b, Space) stay out of it.
    dlg.listener_edit.clear()
    dlg.listener_edit.setFocus()
    qtbot.keyClicks(dlg.listener_edit, "bar 10")
    assert dlg.listener_edit.text() == "bar 10" and view.engine.slots == []
    dlg.listener_edit.setText("eve")
    # Pick clips with the search box: three "low" clips give 3 triplets at most.
    _search_and_check(dlg, "low_")
    assert dlg.chosen_radio.isChecked() and len(dlg.chosen_clip_ids()) == 3
    dlg.trials_spin.setValue(4)
    assert "Trials: 4 asked, but the chosen 3 clips give at most 3 triplets" in dlg.errors_label.text()
    assert dlg.capacity_label.text() == "3 clips give at most 3 distinct triplets"
    assert not dlg.create_button.isEnabled()
    _search_and_check(dlg, "mid_")
    dlg.trials_spin.setValue(61)
    assert "Trials: 61 asked, but the chosen 6 clips give at most 60 triplets" in dlg.errors_label.text()
    dlg.accept()  # refused while the plan is wrong
    assert dlg.isVisible() and view.creating is None
    dlg.trials_spin.setValue(7)
    dlg.catch_spin.setValue(2)
    dlg.seed_spin.setValue(11)
    dlg.must_play_check.setChecked(True)
    dlg.shuffle_check.setChecked(False)
    assert dlg.errors() == [] and dlg.create_button.isEnabled() and dlg.errors_label.text() == ""
    with Library(clip_library) as lib:
        want_ids = tuple(c.id for c in lib.clips() if c.name.startswith(("low_", "mid_")))
    expected = TripletPlan(n_trials=7, n_catch=2, seed=11, must_play=True, shuffle=False, clip_ids=want_ids)
    assert dlg.plan() == expected
    # A non-default plan goes into the dialog and comes back out unchanged.
    other = TripletPlan(n_trials=9, source="stimuli", active=True, pool_factor=3, metrics=("mse", "nlpd"),
                        n_catch=0, recipes=("white_noise:snr_db=10", "mp3:bitrate_kbps=48"), n_references=3,
                        seed=5, must_play=False, shuffle=True)
    dlg.set_plan("triplet", other)
    assert dlg.plan() == other
    dlg.set_plan("triplet", expected)
    assert dlg.plan() == expected
    qtbot.mouseClick(dlg.create_button, Qt.LeftButton)
    assert not dlg.isVisible()
    qtbot.waitUntil(lambda: view.trial is not None, timeout=60000)
    design, listener, config, n = _stored(clip_library, view.session.id)
    assert (design, listener, n) == ("triplet", "eve", 9)  # 7 scored + 2 catch
    assert config["seed"] == 11 and config["n_catch"] == 2 and config["must_play"] is True
    assert config["shuffle"] is False
    assert config["plan"]["clip_ids"] == list(want_ids)
    assert TripletPlan(**{k: tuple(v) if isinstance(v, list) else v for k, v in config["plan"].items()}) == expected
    assert view.session_box.currentData() == view.session.id and "eve · open · 0/9" in view.session_box.currentText()
    # The next listener: the dialog starts from the open session's plan.
    qtbot.mouseClick(view.new_button, Qt.LeftButton)
    again = view.session_dialog
    assert again is not dlg and again.plan() == expected and again.listener() == ""
    again.reject()


def test_dialog_mushra_by_label_with_recipes_and_a_preview(window, qtbot, clip_library, monkeypatch):
    from perceptlab.library.store import Library

    view = window.listening_view
    dlg = view.new_session_dialog()
    dlg.design_box.setCurrentIndex(dlg.design_box.findData("mushra"))
    assert dlg.must_play_check.isChecked()  # MUSHRA's default
    dlg.listener_edit.setText("fay")
    dlg.label_box.setCurrentIndex(dlg.label_box.findData("low"))
    assert dlg.label_radio.isChecked()
    # One item per reference of the label: the count follows, it is not typed.
    assert not dlg.trials_spin.isEnabled() and dlg.trials_spin.value() == 3
    # A recipe with a typo is refused, naming it and why.
    dlg.recipe_edit.setText("lowpas:cutoff_hz=2000")
    dlg.recipe_add.click()
    assert "lowpas" in dlg.recipe_error.text() and "unknown distortion" in dlg.recipe_error.text()
    for i in range(dlg.recipe_list.count()):
        dlg.recipe_list.item(i).setCheckState(Qt.Checked)
    n_recipes = dlg.recipe_list.count()
    assert f"Recipes: {3 + n_recipes - 2} conditions per item" in dlg.errors_label.text()  # 2 are the anchors
    assert "at most 12" in dlg.errors_label.text() and not dlg.create_button.isEnabled()
    for i in range(dlg.recipe_list.count()):
        dlg.recipe_list.item(i).setCheckState(Qt.Unchecked)
    dlg.recipe_edit.setText("white_noise:snr_db=15")
    dlg.recipe_add.click()
    assert dlg.recipe_error.text() == "" and dlg.checked_recipes() == ("white_noise:snr_db=15",)
    dlg.seed_spin.setValue(4)
    assert dlg.errors() == []
    # Preview: one item rendered and playable (or, without an audio device, said so).
    with qtbot.waitSignal(dlg.preview_ready, timeout=60000) as ready:
        assert dlg.preview()
    assert ready.args == [5]  # reference, hidden reference, two anchors, one condition
    assert dlg.preview_list.count() == 5
    assert dlg.preview_list.item(0).text().startswith("[0] reference")
    assert any("white_noise:snr_db=15" in dlg.preview_list.item(i).text() for i in range(5))
    # No audio device: the preview says so (and why) instead of failing; the sound is still selected.
    from perceptlab.audio import playback

    monkeypatch.setattr(playback, "audio_output_status", lambda: (False, "no output device on this test machine"))
    dlg.engine.close()
    assert not dlg.play_preview(2)
    assert dlg.engine.active_slot == "2"
    assert "No audio output" in dlg.preview_message.text()
    assert "no output device on this test machine" in dlg.preview_message.text()
    assert dlg.isVisible() and dlg.create_button.isEnabled()
    with Library(clip_library) as lib:
        low_ids = [c.id for c in lib.clips(label="low")]
    qtbot.mouseClick(dlg.create_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: view.trial is not None, timeout=60000)
    design, listener, config, n = _stored(clip_library, view.session.id)
    assert (design, listener, n) == ("mushra", "fay", 3)
    plan = config["plan"]
    assert plan["clip_ids"] == low_ids and plan["recipes"] == ["white_noise:snr_db=15"]
    assert plan["anchors"] is True and plan["seed"] == 4 and plan["must_play"] is True
    assert len(view.trial.candidates) == 4


def test_a_failed_creation_is_shown_on_the_screen(window, qtbot):
    from perceptlab.listening.create import MushraPlan

    view = window.listening_view
    view.create_from_plan("mushra", "gus", MushraPlan(n_items=1, recipes=("white_noise:snr_db=10",),
                                                       clip_ids=(999999,)))
    qtbot.waitUntil(lambda: view.creating is None, timeout=30000)
    assert view.message.text().startswith("Cannot create the session: no clip with id 999999")
    assert view.new_button.isEnabled() and view.trial is None
