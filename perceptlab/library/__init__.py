"""The library: one SQLite file of clips, their cached images, encoders and sessions (no Qt).

Every SQL statement of the project lives in this package
(``tests/test_store_layers.py`` checks it); the layers above call methods.

- :mod:`.store`: :class:`~.store.Library`, made of row groups:
  :mod:`.feature_rows` (the feature cache), :mod:`.model_rows` (encoders,
  embeddings, training runs), :mod:`.listening_rows` (stimuli, sessions,
  answers, calibrated variants). :mod:`.schema` holds the tables and their
  migrations; :mod:`.sqlite_safety` the connection that refuses to write into
  a damaged file; :mod:`.errors` the layer's errors (a leaf).
- :mod:`.importer`: files and folders into a library; :mod:`.demo` the bundled
  demo library; :mod:`.hashing` the content hash that keys everything.
- :mod:`.features`: a clip's log-mel image through the cache.
- :mod:`.stimuli`: rendered distortions kept as files.
- :mod:`.indexes`: persistent, memory-mapped search indexes next to the library
  file (built and updated by :mod:`perceptlab.analysis.indexing`);
  :mod:`.index_files` their files: names, durable writes, checksums, the
  verified record, the lock.
"""
