"""Every metric's ranking of a library for one query, and how far the metrics agree.

What the Neighbours panel shows below its table and ``perceptlab neighbours
--rank-agreement`` reports: for one query clip, the library ranked under
each metric, and Kendall's tau-b between every two metrics' distances over
the same clips (1: the same order, 0: unrelated, -1: reversed).

Up to :data:`FULL_RANKING_MAX` clips the rankings are complete (exact, every
clip). A larger library is ranked to the top :data:`TOP_DEPTH` of each
metric through its search index (:func:`perceptlab.analysis.neighbours.neighbours`),
since a complete exact ranking would cost a full scan per metric and query;
tau is then over the clips that two top lists share.
"""

from __future__ import annotations

from itertools import combinations

from perceptlab.analysis.library_metrics import register_library_metrics
from perceptlab.analysis.neighbours import neighbours, ranking
from perceptlab.analysis.similarity import Query
from perceptlab.audio.features import FeatureConfig
from perceptlab.library.store import Clip, Library

#: Libraries up to this many clips are ranked completely.
FULL_RANKING_MAX = 5000
#: Above it, each metric's ranking is its top this many.
TOP_DEPTH = 200
#: Libraries over this many clips get the metric on display as a top list first.
QUICK_FIRST_MIN = 1000
#: The length of that quick top list: the most neighbours the panel lists
#: (its k box stops here). Shorter than :data:`TOP_DEPTH`, so its exact stage
#: re-ranks fewer candidates (the metric's own budget,
#: :func:`perceptlab.metrics.search.default_budget`, when that is larger).
QUICK_DEPTH = 50


def rank_all(library_path: str, query: Clip, metrics: list[str] | None, config: FeatureConfig,
             progress=None, cancel=None, first: str | None = None, on_planned=None, on_metric=None) -> dict:
    """Full rankings of the library for one query under each metric (default: all of the library's).

    A metric that cannot rank this library (a baseline in a library of two
    clips, an encoder whose embeddings are gone) is left out with its reason
    in ``errors``; the others are still shown.

    Parameters
    ----------
    first : str, optional
        Rank this metric before the others (the one a user is looking at).
    on_planned : callable, optional
        ``on_planned(metrics)`` once the list of metrics is known, before any is ranked.
    on_metric : callable, optional
        ``on_metric(metric, ranked)`` as soon as each metric's ranking is ready; in a
        library of more than :data:`QUICK_FIRST_MIN` clips, ``first`` is also
        reported before that as its top :data:`QUICK_DEPTH`.
    progress : callable, optional
        ``progress(done, total)`` in metrics.

    Returns
    -------
    dict
        ``query``, ``rankings`` ({metric: [Neighbour]} in registry order),
        ``taus`` (:func:`kendall_taus`) and ``errors`` ({metric: reason}).
    """
    with Library(library_path) as lib:
        available = register_library_metrics(lib)
        q = Query(query.path, query.name, query)
        metrics = list(metrics or available)
        if on_planned:
            on_planned(list(metrics))
        if first not in metrics and metrics:
            first = metrics[0]  # what a panel with no choice yet shows
        n_clips = lib.count()
        full = n_clips <= FULL_RANKING_MAX
        order = sorted(metrics, key=lambda m: m != first)  # stable: the rest keep their order
        ranked, errors = {}, {}
        if on_metric and first in metrics and full and n_clips > QUICK_FIRST_MIN:
            # The metric on display first as a top list through the search index
            # (a fraction of a full exact ranking's cost), then completely.
            try:
                on_metric(first, neighbours(lib, q, first, QUICK_DEPTH, config, cancel=cancel))
            except ValueError:
                pass  # the full ranking below says why
        for i, m in enumerate(order):
            try:
                if full:
                    ranked[m] = ranking(lib, q, m, config, cancel=cancel)
                else:
                    ranked[m] = neighbours(lib, q, m, TOP_DEPTH, config, cancel=cancel)
            except ValueError as exc:
                errors[m] = str(exc)
            else:
                if on_metric:
                    on_metric(m, ranked[m])
            if progress:
                progress(i + 1, len(order))
    out = {m: ranked[m] for m in metrics if m in ranked}
    return {"query": query, "rankings": out, "taus": kendall_taus(out), "errors": errors}


def kendall_taus(rankings: dict[str, list]) -> dict[tuple[str, str], float]:
    """Kendall's tau-b between every two metrics' distances over the same clips."""
    from scipy.stats import kendalltau

    dist = {}
    for m, ranked in rankings.items():
        by_id = {n.clip.id: n.distance for n in ranked}
        dist[m] = by_id
    out = {}
    for a, b in combinations(rankings, 2):
        ids = sorted(set(dist[a]) & set(dist[b]))
        if len(ids) < 3:
            continue
        tau = kendalltau([dist[a][i] for i in ids], [dist[b][i] for i in ids]).statistic
        out[(a, b)] = float(tau)
    return out
