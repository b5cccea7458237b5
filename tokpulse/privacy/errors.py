"""The one error type callers of the guard handle."""

from __future__ import annotations


class PrivacyInputError(ValueError):
    """Input the guard refuses: too large, too deep, cyclic, or not JSON-shaped (for jobs).

    `str()` is one line saying what was wrong and where, e.g.
    "input is 70.0 MB, over the 64.0 MB limit (privacy.max_input_bytes)"."""


def mb(n: int) -> str:
    """A size for messages: '70.0 MB', '12.5 KB' or '900 bytes'."""
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n} bytes"


def too_large(size: int, limit: int) -> PrivacyInputError:
    return PrivacyInputError(f"input is {mb(size)}, over the {mb(limit)} limit (privacy.max_input_bytes)")
