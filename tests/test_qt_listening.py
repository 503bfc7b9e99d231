"""Listening sessions completed by keyboard alone; a killed app loses no answer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("PySide6.QtWidgets")

from PySide6.QtCore import Qt  # noqa: E402

from perceptlab.library.store import Library  # noqa: E402

pytestmark = [pytest.mark.qt, pytest.mark.slow]


@pytest.fixture
def lib_path(clip_library):
    return clip_library


@pytest.fixture
def window(main_window):
    main_window.central_tabs.setCurrentWidget(main_window.listening_view)
    return main_window


def _answers(lib_path, session_id):
    from perceptlab.listening.session import Session

    with Library(lib_path) as lib:
        s = Session.open(lib, session_id)
        return [t.answer for t in s.answered_trials(include_unanswered=True)]


def test_triplet_session_by_keyboard(window, qtbot, lib_path):
    view = window.listening_view
    sid = view.create_session("triplet", "ann", n_trials=4, n_catch=1, seed=1)
    n = view.trial.n_trials
    assert n == 5
    qtbot.waitUntil(view.sounds_ready, timeout=10000)  # decoded off the GUI thread
    assert set(view.engine.slots) >= {"X", "A", "B"}
    for i in range(n):
        assert view.trial.position == i
        qtbot.keyClick(view, Qt.Key_0)           # hear X
        qtbot.keyClick(view, Qt.Key_2 if i % 2 else Qt.Key_1)  # hear B or A: the tentative choice
        qtbot.keyClick(view, Qt.Key_A)           # loop start
        qtbot.keyClick(view, Qt.Key_Return)      # answer
    assert view.trial is None and "complete" in view.title.text()
    answers = _answers(lib_path, sid)
    assert [a["choice"] for a in answers] == ["B" if i % 2 else "A" for i in range(n)]
    assert all("X" in a["played"] for a in answers)


def test_mushra_session_by_keyboard_with_must_play(window, qtbot, lib_path):
    view = window.listening_view
    sid = view.create_session("mushra", "bo", n_items=1, must_play=True,
                              recipes=("white_noise:snr_db=10",))
    t = view.trial
    assert t.design == "mushra" and len(t.candidates) >= 4  # hidden ref, 2 anchors, 1 condition
    labels = [s.label for s in t.candidates]
    # Enter before rating: refused, nothing stored.
    qtbot.keyClick(view, Qt.Key_Return)
    assert "Rate every condition" in view.message.text()
    for i, lab in enumerate(labels, start=1):
        qtbot.keyClick(view, getattr(Qt, f"Key_{i}"))
        for _ in range(i):
            qtbot.keyClick(view, Qt.Key_K)        # +5 each
    qtbot.keyClick(view, Qt.Key_J, Qt.ShiftModifier)  # -1 on the last one
    qtbot.keyClick(view, Qt.Key_Return)
    answers = _answers(lib_path, sid)
    scores = answers[0]["scores"]
    expected = {lab: 5.0 * i for i, lab in enumerate(labels, start=1)}
    expected[labels[-1]] -= 1
    assert scores == expected
    assert set(labels) <= set(answers[0]["played"])


def test_a_killed_app_resumes_with_every_answer(lib_path, qtbot, tmp_path):
    from perceptlab.listening.create import TripletPlan, create_session

    with Library(lib_path) as lib:
        sid = create_session(lib, "triplet", "cy", TripletPlan(n_trials=5, n_catch=1, seed=3)).id
    script = textwrap.dedent(f"""
        import os, sys, time
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest
        from perceptlab.qt.app import create_app
        from perceptlab.qt.main_window import QtMainWindow
        app = create_app()
        w = QtMainWindow(library_path={str(lib_path)!r})
        w.show()
        QTest.qWaitForWindowExposed(w)
        w.activateWindow()
        w.central_tabs.setCurrentWidget(w.listening_view)
        app.processEvents()
        v = w.listening_view
        v.open_session({sid})
        for i in range(3):
            QTest.keyClick(v, Qt.Key_2)
            QTest.keyClick(v, Qt.Key_Return)
            app.processEvents()
        print("answered", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    try:
        line = proc.stdout.readline()
        assert line.strip() == "answered", line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    answers = _answers(lib_path, sid)
    assert [a["choice"] for a in answers[:3]] == ["B", "B", "B"] and answers[3] is None

    from PySide6.QtWidgets import QApplication

    from perceptlab.qt.main_window import QtMainWindow

    w = QtMainWindow(library_path=lib_path)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitActive(w)
    w.central_tabs.setCurrentWidget(w.listening_view)
    v = w.listening_view
    assert v.session_box.count() == 1 and "3/6" in v.session_box.itemText(0)
    v.open_session(sid)
    assert v.trial.position == 3  # resumed at the first unanswered trial
    w.activateWindow()
    qtbot.waitActive(w)
    v.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is v, timeout=5000)
    for _ in range(3):
        qtbot.keyClick(v, Qt.Key_1)
        qtbot.keyClick(v, Qt.Key_Return)
    assert v.trial is None, v.message.text()
    answers = _answers(lib_path, sid)
    assert [a["choice"] for a in answers] == ["B", "B", "B", "A", "A", "A"]
    w.close()


def test_agreement_report_view(window, qtbot, lib_path):
    view = window.listening_view
    view.create_session("triplet", "dee", n_trials=4, n_catch=1, seed=2)
    while view.trial is not None:
        # A careful listener: the copy of X on catch trials, otherwise always A.
        expected = view.session.spec(view.trial.position).get("expected")
        qtbot.keyClick(view, Qt.Key_2 if expected == "B" else Qt.Key_1)
        qtbot.keyClick(view, Qt.Key_Return)
    report = window.agreement_view
    window.central_tabs.setCurrentWidget(report)
    assert report.source_box.count() == 2  # all sessions + this one
    report.source_box.setCurrentIndex(1)
    report.analyse()
    qtbot.waitUntil(lambda: report.report is not None, timeout=60000)
    bars = report.report["triplet"]["plot"]["bars"]
    # The default metrics, the baselines beside the perceptual ones.
    assert [b["metric"] for b in bars] == ["mse", "nlpd", "msssim", "logmel-stats", "mfcc-stats"]
    assert all(0 <= b["agreement"] <= 1 for b in bars)
    assert len(report.bars.getPlotItem().items) >= 2  # bars and error bars drawn
    assert "mse" in report.text.toPlainText()
