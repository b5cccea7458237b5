"""Operators can run pools with Celery's own command line."""

from __future__ import annotations

import pytest

from tests.conftest import client_app

pytestmark = pytest.mark.e2e


def test_plain_celery_worker_serves_its_queue_as_that_pool(start_worker, redis_url, clean_queues):
    start_worker("watchers", app="workers.app")
    reply = client_app(redis_url).send_task("tokpulse.ping", queue="watchers").get(timeout=20)
    assert reply["pool"] == "watchers" and reply["queue"] == "watchers"
    assert reply["worker"].startswith("watchers-")


def test_status_exits_nonzero_when_a_pool_is_down(start_worker, redis_url, database_url, clean_queues):
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    start_worker("default")
    r = subprocess.run([sys.executable, "-m", "tokpulse.cli", "status", "--json", "--timeout", "3"], cwd=ROOT,
                       env={**os.environ}, capture_output=True, text=True, timeout=60)
    report = json.loads(r.stdout)
    assert r.returncode == 1
    assert report["pools"]["default"]["alive"] is True
    assert report["pools"]["forecast"]["alive"] is False and report["pools"]["forecast"]["workers"] == 0
    assert report["database_url"] == database_url  # no password to mask here
