"""The perceptlab command, run as a user runs it (a real subprocess)."""

from __future__ import annotations

import json

from perceptlab.cli import main
from conftest import run_cli


run = run_cli


def test_import_then_clips_json(tmp_path, clip_tree):
    lib = tmp_path / "lib.sqlite"
    out = run("import", clip_tree, "--library", lib, "--json")
    summary = json.loads(out.stdout)
    assert summary["imported"] == 9 and summary["failed"] == []
    clips = json.loads(run("clips", "--library", lib, "--json").stdout)["clips"]
    assert len(clips) == 9
    assert set(clips[0]) >= {"id", "path", "name", "label", "duration", "sample_rate", "channels"}
    assert {c["label"] for c in clips} == {"low", "mid", "high"}
    text = run("clips", "--library", lib).stdout
    assert "9 clips" in text and "mid_1.wav" in text


def test_library_env_var_is_the_default(tmp_path, clip_tree, monkeypatch):
    monkeypatch.setenv("PERCEPTLAB_LIBRARY", str(tmp_path / "env.sqlite"))
    run("import", clip_tree)
    assert (tmp_path / "env.sqlite").exists()
    assert "9 clips" in run("clips").stdout


def test_import_summary_lists_failures(tmp_path, clip_tree):
    (clip_tree / "low" / "bad.mp3").write_bytes(b"\x00" * 1000)
    out = run("import", clip_tree, "--library", tmp_path / "lib.sqlite")
    assert "failed 1" in out.stdout and "bad.mp3" in out.stdout


def test_errors_are_one_clear_line(tmp_path):
    out = run("clips", "--library", tmp_path / "missing.sqlite", check=False)
    assert out.returncode == 2
    assert "missing.sqlite: no library here yet" in out.stderr and "Traceback" not in out.stderr
    out = run("import", tmp_path / "nowhere", "--library", tmp_path / "l.sqlite", check=False)
    assert out.returncode == 2 and "nowhere: no such file or folder" in out.stderr
    notlib = tmp_path / "text.sqlite"
    notlib.write_text("x" * 5000)
    out = run("clips", "--library", notlib, check=False)
    assert out.returncode == 2 and "not a usable perceptlab library" in out.stderr


def test_bench_import_runs(capsys):
    assert main(["bench", "import", "--n", "1"]) == 0
    text = capsys.readouterr().out
    assert "22.05 kHz mono WAV" in text and "x real time" in text


def test_the_app_without_a_display_says_so_instead_of_aborting(monkeypatch, clip_library):
    import sys

    import pytest

    if not sys.platform.startswith("linux"):
        pytest.skip("the display check is for Linux (X11 or Wayland)")
    for var in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    out = run("gui", "--library", clip_library, check=False)
    assert out.returncode == 2, out.stderr  # not Qt's SIGABRT
    assert "cannot open the window: no display" in out.stderr and "QT_QPA_PLATFORM=offscreen" in out.stderr


def test_jsonable_is_the_one_json_sanitiser():
    """numpy values become Python ones, non-finite floats null, anything else its str."""
    import json
    from pathlib import Path

    import numpy as np

    from perceptlab.jsonable import jsonable

    out = jsonable({1: (np.float32(0.5), np.int64(3), np.bool_(True)), "a": np.array([1.0, np.nan]),
                    "inf": float("inf"), "p": Path("/x/y.wav"), "n": None})
    assert out == {"1": [0.5, 3, True], "a": [1.0, None], "inf": None, "p": "/x/y.wav", "n": None}
    assert type(out["1"][1]) is int and type(out["1"][2]) is bool
    json.dumps(out, allow_nan=False)
