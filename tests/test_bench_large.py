"""The cold-start neighbours benchmark: a real app in a fresh process on a library built once."""
from __future__ import annotations

import pytest

pytest.importorskip("PySide6.QtWidgets")

from conftest import run_cli  # noqa: E402

pytestmark = pytest.mark.qt


def test_cold_start_neighbours_are_timed_in_a_fresh_app_and_the_library_is_reused(tmp_path):
    from perceptlab.qt.bench_large import run_large_neighbours_bench

    lines = []
    res = run_large_neighbours_bench(8, tmp_path, repeats=1, out=lines.append)
    assert res["clips"] == 8 and res["metric"] == "mse" and 0 < res["shown_ms_median"] < 120000
    assert any("building a 8-clip library" in ln for ln in lines)
    again = []
    run_large_neighbours_bench(8, tmp_path, repeats=1, out=again.append)
    assert not any("building" in ln for ln in again)  # kept for reruns
    with pytest.raises(RuntimeError, match="holds 8 clips, not 9"):
        (tmp_path / "bench-9.sqlite").write_bytes((tmp_path / "bench-8.sqlite").read_bytes())
        run_large_neighbours_bench(9, tmp_path, repeats=1, out=again.append)


def test_large_needs_a_work_folder():
    r = run_cli("bench", "gui", "--large", "100", check=False)
    assert r.returncode == 2 and "--large needs --work DIR" in r.stderr
