"""Celery runtime configuration: JSON only, routing checked, time limits consistent."""

from __future__ import annotations

import pytest

from tokpulse.settings import ConfigError
from workers import names
from workers.app import app
from workers.pools import POOLS, VISIBILITY_TIMEOUT
from workers.routing import TASK_ROUTES, check_routes

app.loader.import_default_modules()  # what a worker does at start: import every task module


def test_json_only():
    assert app.conf.task_serializer == "json"
    assert app.conf.result_serializer == "json"
    assert list(app.conf.accept_content) == ["json"]
    assert list(app.conf.result_accept_content) == ["json"]


def test_events_on_for_flower():
    assert app.conf.worker_send_task_events is True
    assert app.conf.task_send_sent_event is True


def test_every_pool_has_its_own_queue():
    queues = [p.queue for p in POOLS.values()]
    assert len(set(queues)) == len(queues)
    assert set(POOLS) == {"embeddings", "watchers", "ai", "forecast", "redaction", "alerts", "default"}
    declared = {q.name for q in app.conf.task_queues}
    assert declared == set(queues)


def test_route_to_unconsumed_queue_is_refused():
    bad = {**TASK_ROUTES, "tokpulse.mystery": {"queue": "nobody-listens"}}
    with pytest.raises(ConfigError, match="tokpulse.mystery.*nobody-listens"):
        check_routes(bad)
    check_routes()  # the shipped routes pass


def test_visibility_timeout_exceeds_every_hard_limit():
    vt = app.conf.broker_transport_options["visibility_timeout"]
    assert vt == VISIBILITY_TIMEOUT
    assert all(vt > p.time_limit for p in POOLS.values())
    for name, task in app.tasks.items():
        if name.startswith("tokpulse.") and task.time_limit:
            assert vt > task.time_limit, name


def test_long_pools_prefetch_one():
    for name in ("embeddings", "watchers", "ai", "forecast"):
        assert POOLS[name].prefetch_multiplier == 1
        assert POOLS[name].soft_time_limit < POOLS[name].time_limit


def test_product_tasks_have_stable_names_limits_and_delivery_semantics():
    product = {n: t for n, t in app.tasks.items() if n.startswith("tokpulse.")}
    assert names.PING in product and names.PRUNE_HISTORY in product
    for name, task in product.items():
        assert task.soft_time_limit and task.time_limit and task.soft_time_limit < task.time_limit, name
    # every routed name is a registered task, and every constant in names is routed or is ping
    for name in TASK_ROUTES:
        assert name in app.tasks, f"route for unknown task {name}"
    prune = app.tasks[names.PRUNE_HISTORY]
    assert prune.acks_late and prune.reject_on_worker_lost
    assert app.tasks[names.PING].acks_late is False


def test_ping_reply_names_pool_from_queue():
    from tasks.health import ping_reply

    r = ping_reply("watchers", "w@h")
    assert r["pool"] == "watchers" and r["worker"] == "w@h" and r["host"]
