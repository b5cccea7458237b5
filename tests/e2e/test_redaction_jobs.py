"""Privacy guard jobs used by another service: by name, on the redaction queue, with a
real worker; the personal data never shows up in events, logs or the result backend."""

from __future__ import annotations

import json
import threading

import pytest

from tests.conftest import client_app

pytestmark = pytest.mark.e2e

EMAIL = "john.doe.canary@example.com"
CARD = "4111 1111 1111 1111"


def test_redaction_jobs_by_name(start_worker, redis_url, redis_client, clean_queues):
    worker = start_worker("redaction")
    app = client_app(redis_url)

    events: list[dict] = []
    ready = threading.Event()

    def capture():
        with app.connection_for_read() as conn:
            recv = app.events.Receiver(conn, handlers={"*": events.append})
            ready.set()
            try:
                recv.capture(limit=None, timeout=15, wakeup=True)
            except Exception:  # noqa: BLE001 - timeout ends the capture
                pass

    t = threading.Thread(target=capture, daemon=True)
    t.start()
    ready.wait(10)

    text = app.send_task("tokpulse.redact_text", args=[f"Contact {EMAIL}"], queue="redaction")
    assert text.get(timeout=30) == "Contact [EMAIL_REDACTED]"

    obj = app.send_task("tokpulse.redact_object", args=[{"email": EMAIL, "note": f"card {CARD}", "n": 3}],
                        queue="redaction").get(timeout=30)
    assert obj["email"] == "[REDACTED]" and obj["n"] == 3
    assert CARD not in obj["note"] and "[CREDIT_CARD_REDACTED]" in obj["note"]

    batch = app.send_task("tokpulse.redact_batch", args=[[f"mail {EMAIL}", "nothing here", f"pay {CARD}"]],
                          queue="redaction").get(timeout=30)
    assert len(batch) == 3 and batch[1] == "nothing here"
    assert EMAIL not in json.dumps(batch) and CARD not in json.dumps(batch)

    # Bad input fails that job with a clear error; the worker carries on.
    with pytest.raises(Exception) as err:
        app.send_task("tokpulse.redact_batch", args=["not a list"], queue="redaction").get(timeout=30)
    assert "list" in str(err.value)
    assert app.send_task("tokpulse.redact_text", args=["still alive"], queue="redaction").get(timeout=30) == (
        "still alive"
    )
    assert worker.proc.poll() is None

    t.join(20)
    received = [e for e in events if e.get("type") == "task-received"]
    assert received, "task events reach monitors (Flower)"
    blob = json.dumps(events) + worker.output()
    assert EMAIL not in blob and "4111" not in blob, "personal data leaked into events or logs"
    for key in redis_client.scan_iter("celery-task-meta-*"):
        assert EMAIL.encode() not in redis_client.get(key)
