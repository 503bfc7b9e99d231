"""Turning parameters, reports and progress events into JSON-safe values, and config dicts back into dataclasses.

The one place that decides how a Python or numpy value is written as JSON:
numpy scalars and arrays become Python numbers and lists, a non-finite float
becomes ``null`` (JSON has no NaN or infinity, and a reader that gets
``NaN`` fails), tuples become lists, keys become strings, and anything else
(paths, enums) becomes its ``str``.
"""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np


def jsonable(obj):
    """A copy of ``obj`` made of dicts, lists, str, int, float, bool and None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, str) or obj is None:
        return obj
    return str(obj)


def dataclass_from_dict(cls, data: dict, what: str, defaults: dict | None = None):
    """``cls(**data)`` for a config read back from a file or checkpoint, refusing unknown keys.

    Parameters
    ----------
    cls : dataclass type
    data : dict
        The stored fields.
    what : str
        What the dict is, for the message ("feature config").
    defaults : dict, optional
        Values for keys that older files did not record (a stored key wins).

    Raises
    ------
    ValueError
        A key ``cls`` does not have, named in the message.
    """
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} keys: {sorted(unknown)}")
    return cls(**{**(defaults or {}), **data})
