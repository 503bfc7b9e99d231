"""Listening tests: designs (triplet, MUSHRA), sessions, stimuli, export.

Qt-free. The GUI's listening screen is built on
:class:`perceptlab.listening.session.Session` and its :class:`Trial`
dataclass; sessions are created with
:func:`perceptlab.listening.create.create_session` (or the ``Session.create``
of hand-made items). Heavy imports (torch, soundfile) happen only when a
function needs them.

- :mod:`.designs`: what a design asks (triplet items, MUSHRA items and bands).
- :mod:`.create`: a whole session in one call, from a plan.
- :mod:`.session`: one listener working through the trials; answers kept as
  given (the store's rows are in :mod:`perceptlab.library.listening_rows`).
- :mod:`.answers`: answers read back for analysis, and the screening of listeners.
- :mod:`.export`: sessions written out with full provenance.
"""

from perceptlab.listening.designs import (
    DESIGNS,
    MUSHRA,
    MUSHRA_BANDS,
    MUSHRA_MAX_CONDITIONS,
    TRIPLET,
    MushraItem,
    TripletItem,
    band_of,
)
from perceptlab.listening.session import (
    AnsweredTrial,
    Progress,
    Scale,
    Session,
    SessionError,
    SessionInfo,
    Sound,
    Trial,
    delete_session,
    list_sessions,
)

__all__ = [
    "AnsweredTrial", "DESIGNS", "MUSHRA", "MUSHRA_BANDS", "MUSHRA_MAX_CONDITIONS", "MushraItem", "Progress",
    "Scale", "Session", "SessionError", "SessionInfo", "Sound", "TRIPLET", "Trial", "TripletItem", "band_of",
    "delete_session", "list_sessions",
]
