"""The beat schedule: UTC crontabs, `expires` on every entry, entries only for tasks that
exist, and feature flags (agent_config.json `features`) switching entries off.

Later components add their entries to ENTRIES (weekly audit Monday 09:00 UTC, nightly
watchers 02:00 UTC, daily cost forecast)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from celery.schedules import crontab

from workers import names


@dataclass(frozen=True)
class Entry:
    key: str
    task: str
    schedule: crontab
    expires: int  # seconds: a run that could not start in time is dropped, not piled up
    feature: str | None = None  # agent_config.json features.<name>; None = always on
    kwargs: tuple[tuple[str, object], ...] = ()


ENTRIES: tuple[Entry, ...] = (
    Entry("prune-history-daily", names.PRUNE_HISTORY, crontab(minute=30, hour=3), expires=3600),
)


def build_schedule(features, entries: Iterable[Entry] = ENTRIES) -> dict:
    """Celery's `beat_schedule` dict for the enabled entries."""
    out = {}
    for e in entries:
        if e.feature is not None and not getattr(features, e.feature):
            continue
        out[e.key] = {
            "task": e.task,
            "schedule": e.schedule,
            "kwargs": dict(e.kwargs),
            "options": {"expires": e.expires},
        }
    return out
