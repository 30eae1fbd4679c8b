"""The one exception type users see.

Every problem a user can cause (a bad file, a wrong model path, a store made with other settings)
raises :class:`CoevofoldError` with a single line that names the file, the record and what to do.
The CLI prints that line and exits non-zero; tracebacks are kept for programming errors.
"""

from __future__ import annotations


class CoevofoldError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class LeakageError(CoevofoldError):
    """A held-out superfamily, family or sequence also appears in training."""
