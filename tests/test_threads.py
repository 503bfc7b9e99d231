"""One owner of torch's thread count: jobs that overlap never leave a count nobody chose.

With OpenMP, ``torch.set_num_threads`` sets the calling thread's count and
the count new threads start with; the pool threads of the GUI pick it up
when their next job starts.
"""
from __future__ import annotations

import threading

import pytest
import torch

from perceptlab import threads


@pytest.fixture
def fresh_owner(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_default", None)
    monkeypatch.setattr(threads, "_requests", [])
    yield before
    torch.set_num_threads(before)


def test_overlapping_jobs_end_in_any_order_and_the_default_comes_back(fresh_owner):
    threads.set_default_threads(3)
    assert torch.get_num_threads() == 3
    first_in, second_done, first_may_end = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with threads.limited_threads(2):
            first_in.set()
            second_done.wait(10)
            seen["first, after the second ended"] = torch.get_num_threads()
            first_may_end.wait(10)

    t = threading.Thread(target=first)
    t.start()
    assert first_in.wait(10)
    with threads.limited_threads(1):  # starts after the first, ends before it
        seen["both running"] = torch.get_num_threads()
    second_done.set()
    first_may_end.set()
    t.join(10)
    assert seen == {"both running": 1, "first, after the second ended": 2}
    assert _count_in_a_new_thread() == 3  # the process's count for new workers is the default again


def _count_in_a_new_thread() -> int:
    out = []
    t = threading.Thread(target=lambda: out.append(torch.get_num_threads()))
    t.start()
    t.join(10)
    return out[0]


def test_without_a_default_the_count_before_the_first_job_is_restored(fresh_owner):
    with threads.limited_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == fresh_owner
    with threads.limited_threads(None):
        assert torch.get_num_threads() == fresh_owner
