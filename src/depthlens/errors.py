"""Errors a user can act on.

Every error raised for bad user input is a :class:`DepthlensError`. The CLI turns it into
one line on stderr and exit code 2; the message says what is wrong, which value, and how
to fix it.
"""

from __future__ import annotations


class DepthlensError(ValueError):
    """Bad input or an unusable environment; the message tells the user what to do."""

    exit_code = 2


class UnsupportedArchitectureError(DepthlensError):
    """The model's architecture is not in the table and the generic fallback failed."""


class NonFiniteActivationError(DepthlensError):
    """NaN or inf appeared in the residual stream; the message names the first layer."""
