"""The versions of what shapes a result, recorded with it for provenance.

Checkpoints, rendered stimuli and evaluation reports all record this one
dict, so a result can be traced to the code and libraries that made it.
"""

from __future__ import annotations

import platform
from importlib import metadata


def package_versions() -> dict:
    """{name: version string or None} of perceptlab, Python and the numeric and audio libraries.

    Every value is a plain ``str`` (``torch.__version__`` is a TorchVersion,
    which a weights-only checkpoint refuses) or None when a library is
    missing or has no such build (``cuda`` on a CPU-only torch).
    """
    import numpy as np

    from perceptlab import __version__

    out: dict = {"perceptlab": __version__, "python": platform.python_version(),
                 "platform": platform.platform(), "numpy": str(np.__version__)}
    try:
        import torch

        out["torch"] = str(torch.__version__)
        out["cuda"] = None if torch.version.cuda is None else str(torch.version.cuda)
    except ImportError:
        out["torch"] = out["cuda"] = None
    # Distribution metadata, so recording a version never imports a heavy package.
    for name, dist in (("torchaudio", "torchaudio"), ("soundfile", "soundfile"),
                       ("scipy", "scipy"), ("sklearn", "scikit-learn")):
        try:
            out[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[name] = None
    try:
        import soundfile

        out["libsndfile"] = str(soundfile.__libsndfile_version__)
    except (ImportError, OSError, AttributeError):
        out["libsndfile"] = None
    return out
