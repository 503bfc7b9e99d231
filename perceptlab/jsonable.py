"""Turning parameters and reports into JSON-safe values."""

from __future__ import annotations


def jsonable(obj):
    """A copy of ``obj`` made of dicts, lists, str, int, float, bool and None.

    Tuples become lists, keys become strings, anything else (paths, numpy
    scalars, enums) becomes its ``str``.
    """
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)
