"""The Qt bindings themselves: a signal delivered to a Python slot must not leak references.

PySide6 6.12.0 decrements None's reference count once per signal delivered to
a Python callable returning None; on Python < 3.12 (where None is not
immortal) the app aborts with "deallocating None" after enough clicks. The
pin in pyproject.toml keeps that release out; this test catches a regression.
"""

import sys

import pytest

pytest.importorskip("PySide6.QtWidgets")

pytestmark = pytest.mark.qt


def test_signals_do_not_leak_references(qtbot):
    from PySide6.QtWidgets import QPushButton

    button = QPushButton()
    qtbot.addWidget(button)
    calls = []
    button.clicked.connect(lambda: calls.append(1))
    before = sys.getrefcount(None)
    for _ in range(500):
        button.click()
    assert len(calls) == 500
    assert abs(sys.getrefcount(None) - before) < 50
