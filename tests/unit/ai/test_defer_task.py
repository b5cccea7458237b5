"""`defer_task`: a rate-limit deferral re-schedules a task without using up its retries.

A probe task is declared exactly as the embeddings tasks are (`fleet_task` with
`retry_for` and `max_retries`, `raise defer_task(self, exc) from None` on RateLimitWait)
on a Celery app with an in-memory broker and result backend. Each message the broker
holds is delivered to Celery's own worker request code (`Request.execute`: the trace,
autoretry, Retry handling and result states a pool process uses); a countdown's ETA is
not waited for, so the tests take no time and assert no timing."""

from __future__ import annotations

import uuid

import pytest
from celery import Celery
from celery.worker.request import Request
from kombu import Queue

from tokpulse.ai import DeferralLimitReached, ProviderUnavailable, RateLimitWait, defer_task
from tokpulse.ai.deferral import DEFERRALS_HEADER, MAX_DEFERRALS, defer_countdown, deferrals
from workers.base import fleet_task

QUEUE = f"deferral-test-{uuid.uuid4().hex[:8]}"
MAX_RETRIES = 2

# What each run of a job does next ("wait": the shared limit says wait; "outage": the
# provider is down after the gateway's own retries; "ok": success), and what each run saw.
SCRIPTS: dict[str, list[str]] = {}
RUNS: dict[str, list[tuple[int, int]]] = {}


@pytest.fixture(scope="module")
def app() -> Celery:
    app = Celery("deferral-test", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                    result_accept_content=["json"], task_default_queue=QUEUE,
                    task_queues=[Queue(QUEUE, routing_key=QUEUE)], task_create_missing_queues=False)

    @fleet_task(app, "tokpulse_test.defer_probe", idempotent=True, bind=True,
                retry_for=(ProviderUnavailable,), max_retries=MAX_RETRIES)
    def probe(self, job: str, max_deferrals: int = MAX_DEFERRALS) -> str:
        RUNS[job].append((self.request.retries, deferrals(self.request)))
        step = SCRIPTS[job].pop(0)
        try:
            if step == "wait":
                raise RateLimitWait(30.0, "text-embedding-3-small")
            if step == "outage":
                raise ProviderUnavailable("text-embedding-3-small: 503 after 5 attempts")
            return "done"
        except RateLimitWait as exc:
            raise defer_task(self, exc, max_deferrals=max_deferrals) from None

    return app


def run_job(app: Celery, script: list[str], **kwargs):
    """Send the probe job and deliver every message it leads to, as a worker would.
    Returns (final AsyncResult, headers of every delivered message)."""
    job = uuid.uuid4().hex
    SCRIPTS[job], RUNS[job] = list(script), []
    result = app.tasks["tokpulse_test.defer_probe"].apply_async((job,), kwargs)
    delivered: list[dict] = []
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        for _ in range(len(script) + 1):
            message = channel.basic_get(QUEUE, no_ack=True)
            if message is None:
                break
            assert message.content_type == "application/json"  # JSON messages only
            delivered.append(dict(message.headers))
            Request(message, app=app, task=app.tasks[message.headers["task"]], hostname="probe@test").execute()
        assert channel.basic_get(QUEUE, no_ack=True) is None, "more messages than the script has steps"
    assert SCRIPTS[job] == [], f"the job stopped with steps left: {SCRIPTS[job]}"
    return result, RUNS.pop(job), delivered


def test_waiting_for_the_rate_limit_leaves_every_retry_for_an_outage(app):
    result, runs, delivered = run_job(app, ["wait", "wait", "wait", "outage", "outage", "ok"])
    assert result.state == "SUCCESS" and result.result == "done"
    # (request.retries, deferrals) per run: deferrals have their own counter; retries
    # count only the two outages, so the job still had max_retries=2 for them.
    assert runs == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 3), (2, 3)]
    # Every re-send is the same job (task id), and each deferral waits its countdown.
    assert {h["id"] for h in delivered} == {result.id}
    assert all(h["eta"] for h in delivered[1:4])
    assert [h.get(DEFERRALS_HEADER) for h in delivered] == [None, 1, 2, 3, 3, 3]
    # Nothing leaks into the task object that a later job in this process would inherit
    # (self.retry(max_retries=N) leaves override_max_retries behind).
    assert not hasattr(app.tasks["tokpulse_test.defer_probe"], "override_max_retries")


def test_an_outage_is_still_bounded_by_max_retries(app):
    result, runs, _ = run_job(app, ["wait", "outage", "outage", "outage"])
    assert result.state == "FAILURE" and isinstance(result.result, ProviderUnavailable)
    assert runs == [(0, 0), (0, 1), (1, 1), (2, 1)]


def test_deferrals_have_their_own_cap(app):
    result, runs, _ = run_job(app, ["wait", "wait", "wait"], max_deferrals=2)
    assert result.state == "FAILURE" and isinstance(result.result, DeferralLimitReached)
    assert "after 2 deferrals" in str(result.result) and "ai.rate_limits" in str(result.result)
    assert runs == [(0, 0), (0, 1), (0, 2)]


def test_called_outside_a_worker_the_wait_is_raised():
    class Request:
        called_directly = True

    class Task:
        request = Request()

    exc = RateLimitWait(12.3, "gpt-4o-mini")
    assert defer_task(Task(), exc) is exc


def test_the_countdown_covers_the_wait():
    exc = RateLimitWait(12.3, "gpt-4o-mini")
    assert all(13 <= defer_countdown(exc) <= 15 for _ in range(50))
    assert "13s" in str(exc) and "\n" not in str(exc)
