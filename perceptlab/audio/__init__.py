"""Sound in and out, and sound to image (no Qt, no SQLite).

Pure signal processing: nothing here imports the library, the metrics or
anything above them (``tests/test_store_layers.py`` checks it).

- :mod:`.decode`: any audio file to mono float32 at the project rate, streamed.
- :mod:`.features`: log-mel images on a fixed, absolute [0, 1] scale, and the
  windows cut from them.
- :mod:`.loudness`: integrated loudness (ITU-R BS.1770-4, pyloudnorm's filters).
- :mod:`.distort`: graded distortions of a signal, the stimuli of listening
  tests; each kind is one function in the ``@_kind`` registry. A new
  distortion goes here. :mod:`.mp3_codec` (the MP3 round trip) and
  :mod:`.phase_vocoder` (tempo and pitch, band-limited resampling) serve it.
- :mod:`.invert`: a log-mel image back to audio (Griffin-Lim), to hear what
  an encoder keeps.
- :mod:`.playback`: the sounddevice engine behind the player (A/B slots,
  loop, level); :mod:`.backend` asks a child process whether an output exists.
- :mod:`.bench`: ``perceptlab bench import``.
"""
