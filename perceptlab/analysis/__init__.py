"""What the numbers say: distances over a library, agreement with listeners, reports (no Qt).

Built on :mod:`perceptlab.metrics` (the distances between two images) and
:mod:`perceptlab.library` (the clips and their images); the app and the
``perceptlab`` command both call these functions.

- Which metrics a library has: :mod:`.library_metrics` (its encoders and
  calibrated NLPD variants beside the registry's built-ins).
- Distances between clips: :mod:`.clip_inputs` (what a metric sees of a clip,
  cached), :mod:`.similarity` (queries, pairs, metric names),
  :mod:`.matrices` (whole matrices, rows against columns), :mod:`.neighbours`
  and :mod:`.rankings` (nearest clips, every metric's ranking, Kendall's tau),
  :mod:`.knn_graph` and :mod:`.sharding` (k-NN graphs in blocks, over
  processes), :mod:`.indexing` (the persistent search indexes),
  :mod:`.matrix_summary` (label-block summaries of large matrices),
  :mod:`.local_maps` (where two images differ), :mod:`.projection` (2-D maps).
- Agreement with listeners: :mod:`.agreement` (with :mod:`.score_mapping`,
  the P.1401 mapping and correlations), :mod:`.agreement_stats`,
  :mod:`.calibration` (NLPD fitted to answers), :mod:`.probe` (a quick check
  on the user's own clips), :mod:`.retrieval` (1-NN by label).
- :mod:`.evaluate`: the genre-classification protocol, one module per step.
- :mod:`.stats`: every statistic the reports use (scipy, scikit-learn).
- :mod:`.bench`, :mod:`.matrix_gpu_check`: benchmark figures and the CUDA check.
"""
