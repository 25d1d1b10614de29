"""Errors a user can cause, and how the machine reports that it stopped.

`UserError` carries a one-line message that the CLI prints without a traceback and turns into
exit status 2 (bad file, bad option, an image that does not fit).  Guest misbehaviour is never
an exception: it ends a run with a `StopReason` and a diagnostic (see emu/machine.py).
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


class EngineError(Exception):
    """The CPU engine is not the one whose internals this emulator verified (DESIGN D1)."""
