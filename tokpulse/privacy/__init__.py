"""Privacy guard: redact PII and credentials before anything reaches an LLM.

Shared service used in-process by every component that talks to a model, and offered to other
services as jobs on the `redaction` queue (`tokpulse.privacy.jobs`).

    from tokpulse.privacy import get_privacy_guard
    guard = get_privacy_guard()
    guard.redact("Contact john@example.com")   # 'Contact [EMAIL_REDACTED]'
"""

from tokpulse.privacy.errors import PrivacyInputError
from tokpulse.privacy.guard import (
    REDACTED,
    Findings,
    PrivacyGuard,
    ReversibleSession,
    get_privacy_guard,
    validate_custom_patterns,
)

__all__ = [
    "REDACTED",
    "Findings",
    "PrivacyGuard",
    "PrivacyInputError",
    "ReversibleSession",
    "get_privacy_guard",
    "validate_custom_patterns",
]
