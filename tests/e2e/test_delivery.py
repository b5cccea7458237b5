"""Delivery semantics with real worker processes: JSON only, acks-late redelivery."""

from __future__ import annotations

import os
import pickle
import signal
import time
import uuid

import psutil
import pytest
from kombu import Connection, Exchange, Producer

from tests.conftest import client_app, wait_for

pytestmark = pytest.mark.e2e


def _publish_raw(redis_url: str, queue: str, task: str, args: list, serializer: str) -> str:
    """Publish a Celery protocol-2 message by hand with the given serializer."""
    task_id = str(uuid.uuid4())
    body = (args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None})
    with Connection(redis_url) as conn:
        producer = Producer(conn.default_channel, exchange=Exchange(""), serializer=serializer)
        producer.publish(
            body if serializer == "json" else pickle.dumps(body),
            routing_key=queue,
            serializer=serializer if serializer == "json" else None,
            content_type=None if serializer == "json" else "application/x-python-serialize",
            content_encoding=None if serializer == "json" else "binary",
            headers={"lang": "py", "task": task, "id": task_id, "root_id": task_id, "parent_id": None,
                     "group": None, "argsrepr": "", "kwargsrepr": "", "origin": "test"},
            declare=[],
        )
    return task_id


def test_pickled_message_is_rejected_and_never_runs(start_worker, redis_client, redis_url, clean_queues):
    worker = start_worker("default", app="tests.e2e.testapp")
    key = f"pickle-{uuid.uuid4().hex}"
    _publish_raw(redis_url, "default", "tokpulse_test.mark", [key], serializer="pickle")
    # a JSON message behind it proves the worker consumed (and got past) the pickled one
    json_key = f"json-{uuid.uuid4().hex}"
    _publish_raw(redis_url, "default", "tokpulse_test.mark", [json_key], serializer="json")
    wait_for(lambda: redis_client.get(f"{json_key}:done"), 30, message="the JSON message to run")
    time.sleep(0.5)
    assert redis_client.get(f"{key}:attempts") is None, "the pickled message ran"
    assert redis_client.llen("default") == 0, "the pickled message was requeued"
    assert worker.proc.poll() is None, "the worker died on a bad message"
    assert "ContentDisallowed" in worker.output() or "disallowed" in worker.output().lower()


def _child_running(worker_pid: int, key: str, redis_client) -> int | None:
    pids = [int(p) for p in redis_client.lrange(f"{key}:pids", 0, -1)]
    children = {c.pid for c in psutil.Process(worker_pid).children(recursive=True)}
    running = [p for p in pids if p in children]
    return running[0] if running else None


def test_pool_process_killed_mid_task_is_redone(start_worker, redis_client, redis_url, clean_queues):
    """SIGKILL the process running an acks-late task: reject_on_worker_lost requeues it
    and a restarted pool process completes it."""
    worker = start_worker("default", app="tests.e2e.testapp", concurrency=1)
    key = f"kill-{uuid.uuid4().hex}"
    res = client_app(redis_url).send_task("tokpulse_test.mark", args=[key, 30.0], queue="default")
    victim = wait_for(lambda: _child_running(worker.pid, key, redis_client), 20, message="task to start")
    os.kill(victim, signal.SIGKILL)
    assert res.get(timeout=60) == 2, "the task was redone as a second attempt"
    assert int(redis_client.get(f"{key}:done")) == 1
    pids = [int(p) for p in redis_client.lrange(f"{key}:pids", 0, -1)]
    assert pids[0] == victim and pids[1] != victim


def test_whole_worker_killed_mid_task_completes_on_a_restarted_worker(
    start_worker, redis_client, redis_url, clean_queues
):
    """SIGKILL the whole worker (main process and pool): nothing acked the message, so
    Redis hands it to the next worker once the visibility timeout passes. (The timeout
    is shortened to 3 s for this test; in production it exceeds every hard limit.)"""
    env = {"TEST_VISIBILITY_TIMEOUT": "3"}
    worker = start_worker("default", app="tests.e2e.testapp", env=env)
    key = f"killall-{uuid.uuid4().hex}"
    res = client_app(redis_url).send_task("tokpulse_test.mark", args=[key, 30.0], queue="default")
    wait_for(lambda: _child_running(worker.pid, key, redis_client), 20, message="task to start")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.proc.wait(10)
    assert redis_client.get(f"{key}:done") is None
    assert redis_client.zcard("unacked_index") == 1, "the message is held unacked in Redis"
    second = start_worker("default", app="tests.e2e.testapp", env=env)
    try:
        assert res.get(timeout=60) == 2
    except Exception:
        print(second.output()[-4000:])
        raise
    assert int(redis_client.get(f"{key}:done")) == 1
