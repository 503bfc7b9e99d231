"""A preference saved in one test never reaches the next one (Qt caches its settings folder per process)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.qt


def test_a_window_preference_is_saved(qtbot):
    from perceptlab.qt.window_layout import settings

    s = settings()
    s.setValue("player/autoplay", True)
    s.sync()
    assert settings().value("player/autoplay", False, type=bool)


def test_the_next_test_starts_from_no_preferences(qtbot):
    from perceptlab.qt.window_layout import settings

    assert not settings().value("player/autoplay", False, type=bool)
    assert settings().allKeys() == []
