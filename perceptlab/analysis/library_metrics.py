"""The metrics one library brings: its encoders and its calibrated NLPD variants.

The metric registry (:mod:`perceptlab.metrics.registry`) is process-wide and
holds the built-in metrics. A library adds its own: one ``embedding:<name>``
per encoder whose embeddings it stores (:mod:`perceptlab.models.embedding_metric`)
and one ``nlpd:calibrated-<name>`` per NLPD variant fitted to its listeners
and saved in it (:mod:`perceptlab.analysis.calibration`).
:func:`register_library_metrics` registers them and says which metrics the
library can compute, so every list a user picks a metric from (the CLI's
``--metric`` choices, the GUI's metric menus) is the same.

This module sits above both :mod:`perceptlab.analysis.similarity` (which
computes distances under any registered metric) and
:mod:`perceptlab.analysis.calibration` (which fits and saves the variants);
neither imports it.
"""

from __future__ import annotations

from perceptlab.library.store import Library


def register_library_metrics(library: Library) -> list[str]:
    """Register the metrics a library brings: its encoders (``embedding:<name>``)
    and its calibrated NLPD variants (``nlpd:calibrated-<name>``).

    Returns the names of every metric this library can compute: the built-in
    ones (:func:`perceptlab.metrics.registry.builtin_names`), then its own,
    never another library's. The registry is process-wide, so a window that
    opened another library may have registered metrics this one cannot
    compute (:attr:`perceptlab.metrics.metric.Metric.of_library` tells them
    apart).
    """
    from perceptlab.analysis.calibration import register_saved_variants
    from perceptlab.metrics.registry import builtin_names
    from perceptlab.models.embedding_metric import register_library_embeddings

    own = [m.name for m in register_library_embeddings(library) + register_saved_variants(library)]
    return builtin_names() + own
