"""The core imports and works with PySide6 and pyqtgraph absent."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import perceptlab

CORE = ["perceptlab.audio", "perceptlab.audio.decode", "perceptlab.audio.features", "perceptlab.library",
        "perceptlab.library.store", "perceptlab.library.importer", "perceptlab.library.features",
        "perceptlab.metrics", "perceptlab.models", "perceptlab.train", "perceptlab.analysis",
        "perceptlab.listening", "perceptlab.cli", "perceptlab.tasks"]


def test_core_imports_without_qt(tmp_path):
    code = textwrap.dedent(f"""
        import sys, importlib, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6'):
                    raise ImportError('blocked for this test: ' + name)
        sys.meta_path.insert(0, Block())
        for m in {CORE!r}:
            importlib.import_module(m)
        # and does real work: a feature image of a tone
        import numpy as np
        from perceptlab.audio.features import log_mel
        assert log_mel(np.sin(np.arange(22050) / 10).astype('float32')).shape[0] == 128
        assert not any(k.split('.')[0] in ('PySide6', 'pyqtgraph') for k in sys.modules)
        print('ok')
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_no_qt_import_outside_the_qt_package():
    root = Path(perceptlab.__file__).parent
    offenders = []
    for py in root.rglob("*.py"):
        if "qt" in py.relative_to(root).parts[:1]:
            continue
        for line in py.read_text().splitlines():
            s = line.strip()
            if s.startswith(("import PySide6", "from PySide6", "import pyqtgraph", "from pyqtgraph")):
                offenders.append(f"{py.relative_to(root)}: {s}")
    assert not offenders, offenders
