"""One connection pool per process, never shared across fork."""

from __future__ import annotations

import multiprocessing as mp
import os

import pytest

from workers import db


def _child_backend(q) -> None:
    with db.transaction() as cur:
        cur.execute("SELECT pg_backend_pid(), current_setting('application_name')")
        q.put((os.getpid(), *cur.fetchone()))


def test_pool_is_recreated_after_fork_and_names_the_pool(monkeypatch):
    monkeypatch.setenv("TOKPULSE_POOL", "watchers")
    db.close_pool()
    with db.transaction() as cur:
        cur.execute("SELECT pg_backend_pid(), current_setting('application_name')")
        parent_backend, app_name = cur.fetchone()
    assert app_name == "tokpulse-watchers"
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_backend, args=(q,))
    p.start()
    child_pid, child_backend, _ = q.get(timeout=30)
    p.join(30)
    assert p.exitcode == 0
    assert child_pid != os.getpid()
    assert child_backend != parent_backend, "the child must open its own connection"
    # the parent's pooled connection still works after the child exited
    with db.transaction() as cur:
        cur.execute("SELECT pg_backend_pid()")
        assert cur.fetchone()[0] == parent_backend
    db.close_pool()


def test_transaction_rolls_back_on_error():
    with db.transaction() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS tx_probe (v int)")
        cur.execute("DELETE FROM tx_probe")
    with pytest.raises(ZeroDivisionError), db.transaction() as cur:
        cur.execute("INSERT INTO tx_probe VALUES (1)")
        raise ZeroDivisionError
    with db.transaction() as cur:
        cur.execute("SELECT count(*) FROM tx_probe")
        assert cur.fetchone()[0] == 0


def test_vectors_round_trip_through_the_pool():
    import numpy as np

    with db.transaction() as cur:
        cur.execute("SELECT %s::vector", (np.array([0.5, 0.25, 1.0], dtype=np.float32),))
        v = cur.fetchone()[0]
    assert [float(x) for x in (v.to_list() if hasattr(v, "to_list") else v)] == [0.5, 0.25, 1.0]  # pgvector 0.3 or 0.5
