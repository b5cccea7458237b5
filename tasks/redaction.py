"""Privacy guard jobs for other services (redaction queue)."""

from __future__ import annotations
