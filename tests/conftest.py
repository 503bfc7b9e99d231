"""Shared fixtures.

Every test runs with the library location and the user data folders pointed
at a temporary directory, so nothing touches the real user's files.

Set ``PERCEPTLAB_STRICT=1`` (CI does) to turn a skipped test that needs a
display or an audio device into a failure: in CI those must really run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

STRICT = os.environ.get("PERCEPTLAB_STRICT") == "1"

# Qt tests run without a screen unless the caller chose a platform.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.setenv("PERCEPTLAB_LIBRARY", str(home / "default-library.sqlite"))
    # Qt reads the settings folder from XDG_CONFIG_HOME once per process: point
    # it at this test's folder, so a preference one test's window saves
    # (autoplay, the layout) never reaches the next test's window.
    if "PySide6.QtCore" in sys.modules:
        from PySide6.QtCore import QSettings

        QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(home / "config"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    needs_env = item.get_closest_marker("audio") or item.get_closest_marker("qt")
    if STRICT and report.skipped and needs_env:
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"PERCEPTLAB_STRICT=1: a test that needs a display or audio device was skipped: {reason}"


def tone(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    """A sine, float32 (n,)."""
    t = np.arange(int(round(seconds * rate))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_clip(path: Path, seconds: float = 1.0, rate: int = 22050, channels: int = 1,
               freq: float = 440.0, fmt: str | None = None, subtype: str | None = None,
               amp: float = 0.5) -> Path:
    """Write a tone to an audio file; channel k carries amplitude amp/(k+1)."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    mono = tone(seconds, rate, freq, amp)
    data = np.stack([mono / (k + 1) for k in range(channels)], axis=1)
    sf.write(str(path), data, rate, format=fmt, subtype=subtype)
    return path


@pytest.fixture
def clip_tree(tmp_path) -> Path:
    """A small labelled folder: 3 labels x 3 clips, distinct tones, plus a text file."""
    root = tmp_path / "clips"
    for li, label in enumerate(["low", "mid", "high"]):
        for j in range(3):
            write_clip(root / label / f"{label}_{j}.wav", seconds=1.0 + 0.25 * j,
                       freq=110.0 * (2 ** li) * (1 + 0.05 * j))
    (root / "README.txt").write_text("not audio, ignored by the scanner")
    return root


@pytest.fixture
def one_torch_thread():
    """Pin torch to one thread: small-tensor work on a shared 2-core machine runs faster so."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def clip_library(tmp_path, clip_tree) -> Path:
    """A real library file holding the ``clip_tree`` clips."""
    return import_tree(tmp_path, clip_tree)


#: The file :func:`import_tree` adds with ``broken=True``: a WAV header over no audio.
BROKEN = "broken.wav"


def import_tree(tmp_path: Path, clip_tree: Path, broken: bool = False) -> Path:
    """Import ``clip_tree`` into tmp_path/lib.sqlite; with ``broken``, plus one file that cannot be decoded."""
    from perceptlab.library.importer import import_files
    from perceptlab.library.store import Library

    if broken:
        (clip_tree / "mid" / BROKEN).write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really audio at all")
    path = tmp_path / "lib.sqlite"
    with Library(path) as lib:
        summary = import_files(lib, [clip_tree])
    assert len(summary.failed) == int(broken)
    return path


@pytest.fixture(autouse=True)
def _qt_test_hygiene(request, monkeypatch):
    """For Qt tests: a modal dialog would wait forever for a click, so it fails
    instead, with its text; and the widgets a test closed are deleted before
    the next test starts, so nothing of one test is torn down during another."""
    if "qtbot" not in request.fixturenames:
        yield
        return
    from PySide6.QtWidgets import QDialog, QFileDialog, QInputDialog, QMessageBox

    def refuse(kind):
        def fail(*args, **_kwargs):
            text = " | ".join(str(a) for a in args if isinstance(a, str))
            raise AssertionError(f"a modal {kind} opened in a test: {text}")
        return fail

    for name in ("warning", "critical", "question", "information", "about"):
        monkeypatch.setattr(QMessageBox, name, staticmethod(refuse(f"QMessageBox.{name}")))
    for name in ("getOpenFileName", "getOpenFileNames", "getSaveFileName", "getExistingDirectory"):
        monkeypatch.setattr(QFileDialog, name, staticmethod(refuse(f"QFileDialog.{name}")))
    for name in ("getItem", "getText", "getInt", "getDouble"):
        monkeypatch.setattr(QInputDialog, name, staticmethod(refuse(f"QInputDialog.{name}")))
    for cls in (QDialog, QMessageBox):
        monkeypatch.setattr(cls, "exec", lambda self: refuse(type(self).__name__)(self.windowTitle(), getattr(self, "text", lambda: "")()))
    yield
    _delete_closed_widgets()


def _delete_closed_widgets() -> None:
    """Carry out pytest-qt's deleteLater calls now, inside the test that closed the widgets,
    and collect the Python side of what they held while no background task runs: left to
    chance, that collection would fall inside a later test's event loop, beside its workers.

    What survives the collection is frozen (``gc.freeze``): the next collection then scans
    only what later tests create, not again the millions of objects torch, Qt and earlier
    tests left alive (a full collection costs about a second by the middle of the run)."""
    import gc

    from PySide6.QtCore import QCoreApplication, QEvent

    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    gc.collect()
    gc.freeze()


def _wind_down(w) -> None:
    """Stop what the window started, as a user's "stop runs and quit" would, before it closes.

    pytest-qt closes registered widgets before fixture teardown code runs, so
    this is its ``before_close_func``: the close never asks about running
    training, and no background task outlives the test that started it.
    """
    for job in w.training_panel.running_jobs():
        job.kill()
    w._close_decided = True  # no "training is running" question in tests
    for runner in (w.tasks, w.matrix_tasks, w.listening_view.runner):
        assert runner.shutdown(60000), "a background task was still running a minute after cancel"


@pytest.fixture
def main_window(qtbot, clip_library):
    """The real main window on ``clip_library``, shown and active."""
    from perceptlab.qt.main_window import QtMainWindow

    w = QtMainWindow(library_path=clip_library)
    qtbot.addWidget(w, before_close_func=_wind_down)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitActive(w)
    qtbot.waitUntil(lambda: w.metrics_loaded, timeout=30000)  # the registry loads in the background
    yield w
    # pytest-qt has closed the window and asked for its deletion: no part of
    # it may be torn down while a later test runs.
    import shiboken6

    _delete_closed_widgets()
    assert not shiboken6.isValid(w), "the main window outlived its test"


def run_cli(*args, check: bool = True):
    """Run ``perceptlab ARGS`` in a subprocess, as a user would; returns the CompletedProcess."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "perceptlab.cli", *map(str, args)],
                         capture_output=True, text=True, timeout=300)
    if check:
        assert out.returncode == 0, out.stderr
    return out
