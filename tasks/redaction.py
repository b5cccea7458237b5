"""Privacy guard jobs for other services, on the `redaction` queue.

Outside callers send them by name, e.g.
    send_task("tokpulse.redact_text", args=["Contact john@example.com"], queue="redaction")
Bad input (too large, too deep, not JSON) fails that one job with a clear one-line
error (PrivacyInputError); the worker never dies on input. The jobs are pure functions
of their input, so they are idempotent: acks-late, requeued if the process dies. Their
arguments are personal data: the worker withholds them from events (Flower) and logs."""

from __future__ import annotations

from workers import names
from workers.app import app
from workers.base import fleet_task


@fleet_task(app, names.REDACT_TEXT, idempotent=True, sensitive_args=True)
def redact_text(text, strict: bool = False):
    from tokpulse.privacy.jobs import redact_text_job

    return redact_text_job(text, strict=strict)


@fleet_task(app, names.REDACT_OBJECT, idempotent=True, sensitive_args=True)
def redact_object(obj, strict: bool = False):
    from tokpulse.privacy.jobs import redact_object_job

    return redact_object_job(obj, strict=strict)


@fleet_task(app, names.REDACT_BATCH, idempotent=True, sensitive_args=True)
def redact_batch(items, strict: bool = False):
    from tokpulse.privacy.jobs import redact_batch_job

    return redact_batch_job(items, strict=strict)
