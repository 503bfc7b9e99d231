"""Atomic writes: a failed write leaves the old file and no temporary file behind."""
from __future__ import annotations

import os

import pytest

from perceptlab.atomic import atomic_path, atomic_write, atomic_write_text


def test_a_write_that_fails_half_way_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "report.json"
    atomic_write_text(target, "old")

    def half(fh):
        fh.write(b"new but unfin")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_path_writer_gets_a_temporary_name_and_the_usual_permissions(tmp_path):
    target = tmp_path / "sub" / "clip.wav"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_bytes(b"RIFF")
        assert not target.exists()
    assert target.read_bytes() == b"RIFF"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
