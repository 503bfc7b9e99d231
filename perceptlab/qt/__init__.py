"""The desktop app: every PySide6 and pyqtgraph import of the project lives here.

The widgets call the same core functions as the ``perceptlab`` command, in
background tasks (:mod:`.workers`); nothing in the core imports this package
(``tests/test_import_graph.py``), and importing it does not load torch: the
window loads the metric registry in a worker after its first paint.

- The window: :mod:`.app` (start-up), :mod:`.main_window` made of
  :mod:`.window_layout` (docks, saved state), :mod:`.window_menus`,
  :mod:`.window_library` (opening, importing, metrics, status) and
  :mod:`.window_slots` (slots A and B, the player's wiring);
  :mod:`.analysis_state` (library matrices computed once, shared);
  :mod:`.dialogs`, :mod:`.page_tabs`.
- Panels and views, one module each (a new panel goes here):
  :mod:`.library_panel`, :mod:`.spectrogram_view` (with :mod:`.spectrogram_pane`, :mod:`.time_axes`
  and :mod:`.waveform_strip`), :mod:`.player_bar`, :mod:`.compare_panel`,
  :mod:`.neighbours_panel`, :mod:`.map_view` (with :mod:`.label_legend`),
  :mod:`.matrix_view` (with :mod:`.matrix_axis`, :mod:`.matrix_correlations`,
  :mod:`.matrix_export`), :mod:`.reconstruction_view`, :mod:`.training_panel`
  (with :mod:`.training_curves`, :mod:`.training_numbers`,
  :mod:`.training_jobs`),
  :mod:`.listening_view` (with :mod:`.listening_sessions`,
  :mod:`.listening_rating`), :mod:`.session_dialog` (with
  :mod:`.session_preview`, :mod:`.session_checks`), :mod:`.agreement_view`,
  :mod:`.probe_view`, :mod:`.evaluation_view`.
- :mod:`.bench`, :mod:`.bench_large`: ``perceptlab bench gui``.
"""
