"""The base task every fleet task uses, and the `fleet_task` decorator.

`fleet_task` keeps task definitions short and uniform: a stable name, time limits taken
from the pool the task is routed to, acks-late + reject-on-worker-lost for idempotent
tasks, narrow retries, and (optionally) a row in `job_runs` per run."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import celery
from celery.worker.request import Request
from psycopg2.extras import Json

from workers.routing import pool_of_task

log = logging.getLogger(__name__)


class SensitiveArgsRequest(Request):
    """Keeps a task's arguments out of events (Flower), logs and error reports.

    Senders put `argsrepr`/`kwargsrepr` in message headers; the worker forwards them in
    `task-received` events and log lines. For tasks whose input is personal data (the
    privacy guard's jobs) those reprs are replaced by sizes before anything is emitted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        try:
            a, kw = self._args, self._kwargs
            masked_args = f"<{len(a)} argument(s) withheld: personal data>"
            masked_kwargs = f"<{len(kw)} keyword argument(s) withheld: personal data>"
        except Exception:  # noqa: BLE001 - a malformed body is rejected later anyway
            masked_args = masked_kwargs = "<withheld>"
        self._argsrepr, self._kwargsrepr = masked_args, masked_kwargs
        self._request_dict["argsrepr"] = masked_args
        self._request_dict["kwargsrepr"] = masked_kwargs


class FleetTask(celery.Task):
    """Instrumented base: records runs (when `record_run`) and reports progress."""

    record_run: bool = False
    _started: dict[str, float] = {}

    def report_progress(self, done: int, total: int, **extra: Any) -> None:
        """Progress as task state, so Flower shows it (state PROGRESS, meta done/total)."""
        if self.request.id and not self.request.called_directly:
            self.update_state(state="PROGRESS", meta={"done": done, "total": total, **extra})

    # -- job_runs bookkeeping (best effort: never fails the task itself) -------------
    def before_start(self, task_id, args, kwargs):
        self._started[task_id] = time.monotonic()
        if self.record_run:
            self._record(task_id, "STARTED")

    def on_success(self, retval, task_id, args, kwargs):
        if self.record_run:
            self._record(task_id, "SUCCESS", result=retval)
        self._started.pop(task_id, None)

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        if self.record_run:
            self._record(task_id, "FAILURE", error=f"{type(exc).__name__}: {exc}"[:2000])
        self._started.pop(task_id, None)

    def on_retry(self, exc, task_id, args, kwargs, einfo):
        if self.record_run:
            self._record(task_id, "RETRY", error=f"{type(exc).__name__}: {exc}"[:2000])

    def _record(self, task_id: str, state: str, *, result: Any = None, error: str | None = None) -> None:
        from workers import db

        started = self._started.get(task_id)
        runtime = (time.monotonic() - started) * 1000 if started and state != "STARTED" else None
        delivery = self.request.delivery_info or {}
        try:
            with db.transaction() as cur:
                cur.execute(
                    """
                    INSERT INTO job_runs (task_id, task_name, queue, worker, state, attempts, finished_at,
                                          runtime_ms, error, result)
                    VALUES (%(id)s, %(name)s, %(queue)s, %(worker)s, %(state)s, 1,
                            CASE WHEN %(final)s THEN now() END, %(runtime)s, %(error)s, %(result)s)
                    ON CONFLICT (task_id) DO UPDATE SET
                        state = EXCLUDED.state,
                        worker = EXCLUDED.worker,
                        attempts = job_runs.attempts + (EXCLUDED.state = 'STARTED')::int,
                        finished_at = EXCLUDED.finished_at,
                        runtime_ms = COALESCE(EXCLUDED.runtime_ms, job_runs.runtime_ms),
                        error = EXCLUDED.error,
                        result = COALESCE(EXCLUDED.result, job_runs.result)
                    """,
                    {
                        "id": task_id,
                        "name": self.name,
                        "queue": delivery.get("routing_key"),
                        "worker": self.request.hostname,
                        "state": state,
                        "final": state in ("SUCCESS", "FAILURE"),
                        "runtime": runtime,
                        "error": error,
                        "result": Json(result) if result is not None else None,
                    },
                )
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not fail the task
            log.warning("job_runs: could not record %s %s: %s", self.name, state, type(exc).__name__)


def fleet_task(
    app: celery.Celery,
    name: str,
    *,
    idempotent: bool,
    record_run: bool = False,
    bind: bool = False,
    retry_for: tuple[type[BaseException], ...] = (),
    max_retries: int = 3,
    sensitive_args: bool = False,
    **options: Any,
) -> Callable[[Callable[..., Any]], celery.Task]:
    """Register a task under a stable name with the fleet's defaults.

    idempotent: safe to run twice. Such tasks ack after they finish (acks_late) and are
    requeued if the process running them dies (reject_on_worker_lost); their writes
    must be idempotent (INSERT ... ON CONFLICT on a deterministic key).
    sensitive_args: the arguments are personal data; keep them out of events and logs.
    """
    pool = pool_of_task(name)
    opts: dict[str, Any] = {
        "name": name,
        "base": FleetTask,
        "bind": bind,
        "acks_late": idempotent,
        "reject_on_worker_lost": idempotent,
        "soft_time_limit": pool.soft_time_limit,
        "time_limit": pool.time_limit,
        "record_run": record_run,
    }
    if sensitive_args:
        opts["Request"] = SensitiveArgsRequest
    if retry_for:
        opts.update(
            autoretry_for=retry_for,
            retry_backoff=True,
            retry_backoff_max=300,
            retry_jitter=True,
            max_retries=max_retries,
        )
    opts.update(options)
    return app.task(**opts)
