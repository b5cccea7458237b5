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
    """Prune history, and schedule the vector index build of any namespace whose load ended
    without one (tokpulse.embeddings.pipeline.unbuilt_idle_namespaces): the build runs as
    tokpulse.build_vector_index on the embeddings queue, whose time limit fits a build."""
    from tokpulse.embeddings.pipeline import unbuilt_idle_namespaces

    out = prune_history(job_run_days, outbox_days)
    pending = unbuilt_idle_namespaces()
    for ns in pending:
        app.send_task(names.BUILD_VECTOR_INDEX, args=[ns])
    out["vector_index_builds_sent"] = pending
    return out


@fleet_task(app, names.PRUNE_HISTORY, idempotent=True, record_run=True)
def prune_history_task(job_run_days: int = JOB_RUN_RETENTION_DAYS, outbox_days: int = OUTBOX_RETENTION_DAYS):
    return nightly_housekeeping(int(job_run_days), int(outbox_days))
