from __future__ import annotations

from celery.schedules import crontab

from beat_schedule import ENTRIES, Entry, build_schedule
from tokpulse.settings import Features
from workers.app import app

app.loader.import_default_modules()  # what a worker does at start: import every task module


def test_every_entry_targets_a_registered_task_and_expires():
    assert ENTRIES
    for e in ENTRIES:
        assert e.task in app.tasks, e.task
        assert e.expires > 0
        assert isinstance(e.schedule, crontab)


def test_schedule_is_utc():
    assert app.conf.timezone == "UTC" and app.conf.enable_utc
    assert app.conf.beat_scheduler == "redbeat.RedBeatScheduler"


def test_feature_flags_switch_entries_off():
    entries = (
        Entry("audit", "tokpulse.ping", crontab(minute=0, hour=9, day_of_week="mon"), 3600, "self_diagnosis"),
        Entry("always", "tokpulse.ping", crontab(minute=0), 60),
    )
    on = build_schedule(Features(), entries)
    off = build_schedule(Features(self_diagnosis=False), entries)
    assert set(on) == {"audit", "always"}
    assert set(off) == {"always"}
    assert on["audit"]["options"]["expires"] == 3600
