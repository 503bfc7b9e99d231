"""Errors of the library layer (a leaf module: everything in it may import this)."""

from __future__ import annotations


class LibraryError(Exception):
    """The library file cannot be used (not SQLite, newer schema, locked ...)."""


class LibraryDamaged(LibraryError):
    """The library file is damaged; the message says how to recover it."""
