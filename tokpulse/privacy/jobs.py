"""Plain functions behind the `redaction` queue's tasks (`tokpulse.redact_text`,
`tokpulse.redact_object`, `tokpulse.redact_batch`; the thin Celery tasks live in
tasks/redaction.py).

Every input problem raises `PrivacyInputError` with a one-line message, so a bad message fails
its own job and the worker carries on. The privacy configuration (custom patterns, sensitive
keys, limits) is read once per process from `agent_config.json`."""

from __future__ import annotations

import threading
from typing import Any

from tokpulse.privacy.errors import PrivacyInputError
from tokpulse.privacy.guard import PrivacyGuard, get_privacy_guard
from tokpulse.settings import Privacy, load_settings

_config: Privacy | None = None
_config_lock = threading.Lock()


def privacy_config() -> Privacy:
    """`load_settings().agent.privacy`, read on first use and cached for the process."""
    global _config
    if _config is None:
        with _config_lock:
            if _config is None:
                _config = load_settings().agent.privacy
    return _config


def set_privacy_config(config: Privacy | None) -> None:
    """Replace the cached configuration (tests; None re-reads it on next use)."""
    global _config
    with _config_lock:
        _config = config


def _guard(strict: Any) -> PrivacyGuard:
    if not isinstance(strict, bool):
        raise PrivacyInputError(f"strict must be true or false, got {type(strict).__name__}")
    return get_privacy_guard(strict, privacy_config())


def redact_text_job(text: Any, strict: bool = False) -> str:
    """`tokpulse.redact_text`: one string in, the redacted string out."""
    if not isinstance(text, str):
        raise PrivacyInputError(f"redact_text expects a string, got {type(text).__name__}")
    return _guard(strict).redact(text)


def redact_object_job(obj: Any, strict: bool = False) -> Any:
    """`tokpulse.redact_object`: any JSON value in, its redacted copy out (see `redact_object`)."""
    return _guard(strict).redact_object(obj, json_only=True)


def redact_batch_job(items: Any, strict: bool = False) -> list:
    """`tokpulse.redact_batch`: a list of JSON values in, the list of redacted values out (same
    length and order; strings come back as redacted strings)."""
    if not isinstance(items, list | tuple):
        raise PrivacyInputError(f"redact_batch expects a list, got {type(items).__name__}")
    # One walk over the whole list, so the size limit counts the batch, not each item, and an
    # error names the item: "value of type bytes at $[3].x is not JSON".
    return _guard(strict).redact_object(list(items), json_only=True)
