"""Background tasks and the end of their window."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("PySide6.QtWidgets")

pytestmark = pytest.mark.qt


def test_shutdown_refuses_new_work_and_detaches_running_tasks(qtbot):
    from perceptlab.qt.workers import QtTask, QtTaskRunner

    runner = QtTaskRunner()
    release = threading.Event()
    seen = []

    def slow(progress=None, cancel=None):
        release.wait(10)
        progress(1, 1)
        return "done"

    task = QtTask(slow)
    task.signals.progress.connect(lambda d, t: seen.append("progress"))
    task.signals.finished.connect(lambda r: seen.append(r))
    runner.start(task)
    qtbot.waitUntil(lambda: runner.pool.activeThreadCount() == 1, timeout=5000)

    assert not runner.shutdown(50)  # still running: the wait times out
    assert task.is_cancelled
    later = runner.start(QtTask(lambda progress=None, cancel=None: seen.append("ran")))
    assert later.is_cancelled
    release.set()
    assert runner.wait(60000)  # the first task also imports torch, slow on a busy machine
    qtbot.wait(50)  # deliver anything that was queued
    assert seen == []  # neither the detached task nor the refused one reached anyone


def test_a_finished_task_lets_go_of_its_inputs(qtbot):
    from perceptlab.qt.workers import QtTask, QtTaskRunner

    runner = QtTaskRunner()
    big = bytearray(10)
    task = QtTask(lambda data, progress=None, cancel=None: len(data), big)
    results = []
    task.signals.finished.connect(results.append)
    runner.start(task)
    qtbot.waitUntil(lambda: results == [10], timeout=5000)
    assert task.args == () and task.fn is None


def test_a_task_whose_signals_are_deleted_while_it_runs_ends_silently(qtbot):
    """At quit PySide deletes parentless QObjects, a running task's signals among them;
    the worker thread must then end without "Signal source has been deleted"."""
    import shiboken6
    from PySide6.QtWidgets import QWidget

    from perceptlab.qt.workers import QtTask, QtTaskRunner

    owner = QWidget()
    runner = QtTaskRunner(owner)
    release = threading.Event()
    steps = []

    def slow(progress=None, cancel=None):
        release.wait(10)
        for i in range(3):
            if cancel():
                steps.append("stopped")
                return "stopped"
            progress(i, 3)  # on a deleted signals object
            steps.append(i)
        return "done"

    seen = []
    task = QtTask(slow)
    task.signals.finished.connect(seen.append)
    with qtbot.captureExceptions() as errors:
        runner.start(task)
        qtbot.waitUntil(lambda: runner.pool.activeThreadCount() == 1, timeout=5000)
        shiboken6.delete(task.signals)  # what the application's teardown does to it
        shiboken6.delete(owner)  # the window, its runner and pool: the pool waits for the thread
        release.set()
        qtbot.wait(50)
    assert errors == []
    assert not shiboken6.isValid(runner)
    assert steps == [0, "stopped"]  # the first report found no one listening, so the work stopped
    assert seen == []
