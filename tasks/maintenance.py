"""Housekeeping on the default pool."""

from __future__ import annotations

from workers import names
from workers.app import app
from workers.base import fleet_task

JOB_RUN_RETENTION_DAYS = 30
OUTBOX_RETENTION_DAYS = 90


def prune_history(job_run_days: int = JOB_RUN_RETENTION_DAYS, outbox_days: int = OUTBOX_RETENTION_DAYS) -> dict:
    """Delete finished job runs and delivered alerts past their retention."""
    from workers import db

    with db.transaction() as cur:
        cur.execute(
            "DELETE FROM job_runs WHERE finished_at < now() - make_interval(days => %s)", (job_run_days,)
        )
        runs = cur.rowcount
        cur.execute(
            "DELETE FROM alerts_outbox WHERE status = 'sent' AND sent_at < now() - make_interval(days => %s)",
            (outbox_days,),
        )
        alerts = cur.rowcount
    return {"job_runs_deleted": runs, "alerts_deleted": alerts}


def nightly_housekeeping(job_run_days: int = JOB_RUN_RETENTION_DAYS, outbox_days: int = OUTBOX_RETENTION_DAYS) -> dict:
    """Prune history, and build the vector index of any namespace whose load ended without
    one (see tokpulse.embeddings.pipeline.build_missing_indexes)."""
    from tokpulse.embeddings.pipeline import build_missing_indexes

    out = prune_history(job_run_days, outbox_days)
    out["vector_indexes_built"] = [b.namespace for b in build_missing_indexes()]
    return out


@fleet_task(app, names.PRUNE_HISTORY, idempotent=True, record_run=True)
def prune_history_task(job_run_days: int = JOB_RUN_RETENTION_DAYS, outbox_days: int = OUTBOX_RETENTION_DAYS):
    return nightly_housekeeping(int(job_run_days), int(outbox_days))
