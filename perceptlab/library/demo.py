"""The bundled demo clips and the first-run demo library.

A first start of the app with no library of its own gets the demo clips,
embedded with the shipped general encoders (trained on other recordings than
the demo clips), so that ``embedding:general-*`` are there from the first
screen. Imports nothing heavy until :func:`ensure_demo_library` runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

#: The repository (or source tree) root that holds ``assets/``.
_ROOT = Path(__file__).resolve().parents[2]


def demo_dir() -> Path:
    """The bundled demo clips (``$PERCEPTLAB_DEMO_DIR`` overrides)."""
    env = os.environ.get("PERCEPTLAB_DEMO_DIR")
    return Path(env) if env else _ROOT / "assets" / "demo"


def shipped_general_encoders() -> list[Path]:
    """The general encoders in ``assets/models`` (trained on other recordings than the demo clips)."""
    return sorted((_ROOT / "assets" / "models").glob("general-*.pt"))


def ensure_demo_library(path: Path, out=None, progress: Callable[[int, int], None] | None = None):
    """Open ``path``; if it holds no clips, import the demo clips and embed them
    with the shipped general encoders (so ``embedding:general-*`` are there
    from the first screen, on clips those encoders never heard).

    ``progress(done, total)`` follows the import; messages go to ``out``
    (default: ``sys.stderr`` as it is at the call, not as it was at import).
    Returns the open :class:`~perceptlab.library.store.Library`.
    """
    from perceptlab.library.importer import import_files
    from perceptlab.library.store import Library
    from perceptlab.models.embedding_metric import embed_library

    out = sys.stderr if out is None else out
    lib = Library(path)
    if lib.count(include_failed=True) == 0 and demo_dir().is_dir():
        print(f"perceptlab: first run: importing the demo clips into {path}", file=out)
        summary = import_files(lib, [demo_dir()], progress=progress)
        print(summary.text(), file=out)
        for ckpt in shipped_general_encoders():
            try:
                print(embed_library(lib, ckpt, name=ckpt.stem, device="cpu").text(), file=out)
            except Exception as exc:  # a shipped encoder that cannot be used must not stop the first start
                print(f"perceptlab: {ckpt}: not embedded ({type(exc).__name__}: {exc})", file=out)
    return lib
