"""One PostgreSQL connection pool per process, created after fork.

Celery's prefork pool forks children from the main worker process; a libpq connection
must never cross a fork. The pool is therefore created lazily in the process that uses
it (checked by pid) and eagerly in `worker_process_init`, sized to the pool's
concurrency, with `application_name` naming the pool so `pg_stat_activity` shows who
holds what."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import psycopg2
import psycopg2.extras
import psycopg2.pool

_lock = threading.Lock()
_pool: psycopg2.pool.ThreadedConnectionPool | None = None
_pool_pid: int | None = None
_registered: set[int] = set()
# Pools inherited through fork. They are kept referenced and never used: letting them be
# garbage-collected would close their libpq connections, and closing sends a Terminate
# on the socket the parent still uses, killing the parent's session.
_inherited: list[psycopg2.pool.ThreadedConnectionPool] = []


class DatabaseNotConfigured(RuntimeError):
    pass


def _dsn() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise DatabaseNotConfigured(
            "DATABASE_URL is not set in this process (start it with `tokpulse worker` or `tokpulse up`)"
        )
    return url


def database_url() -> str:
    """This process's DATABASE_URL (for a connection kept outside the pool); a one-line
    error saying how to set it when it is missing."""
    return _dsn()


def init_pool(*, maxconn: int = 4, application_name: str | None = None, dsn: str | None = None) -> None:
    """(Re)create this process's pool. Safe to call again after a fork."""
    global _pool, _pool_pid
    with _lock:
        if _pool is not None and _pool_pid == os.getpid():
            return
        if _pool is not None:
            _inherited.append(_pool)  # the parent's: keep it alive, never close it here
        _registered.clear()
        name = application_name or f"tokpulse-{os.environ.get('TOKPULSE_POOL', 'cli')}"
        _pool = psycopg2.pool.ThreadedConnectionPool(
            0, max(1, maxconn), dsn or _dsn(), application_name=name[:63], connect_timeout=10
        )
        # psycopg2 keeps at most `minconn` idle connections and closes the rest on
        # putconn, and opens `minconn` eagerly. Opening lazily (0 at construction) but
        # keeping every returned connection idle needs minconn raised afterwards.
        _pool.minconn = max(1, maxconn)
        _pool_pid = os.getpid()


def close_pool() -> None:
    global _pool, _pool_pid
    with _lock:
        if _pool is not None:
            if _pool_pid == os.getpid():
                _pool.closeall()
            else:
                _inherited.append(_pool)
        _pool, _pool_pid = None, None
        _registered.clear()


def _get_pool() -> psycopg2.pool.ThreadedConnectionPool:
    if _pool is None or _pool_pid != os.getpid():
        init_pool()
    assert _pool is not None
    return _pool


def _register_vector(conn) -> None:
    if id(conn) in _registered:
        return
    from pgvector.psycopg2 import register_vector

    try:
        register_vector(conn)
    except psycopg2.ProgrammingError:
        # The extension is created by the first migration; before that there is no type.
        conn.rollback()
        return
    conn.commit()
    _registered.add(id(conn))


@contextlib.contextmanager
def connection() -> Iterator[psycopg2.extensions.connection]:
    """A pooled connection with the pgvector adapter registered."""
    pool = _get_pool()
    conn = pool.getconn()
    broken = False
    try:
        if conn.closed:
            pool.putconn(conn, close=True)
            conn = pool.getconn()
        _register_vector(conn)
        yield conn
    except (psycopg2.OperationalError, psycopg2.InterfaceError):
        broken = True
        raise
    finally:
        if broken or conn.closed:
            _registered.discard(id(conn))
        pool.putconn(conn, close=broken or bool(conn.closed))


@contextlib.contextmanager
def transaction(*, dict_rows: bool = False) -> Iterator[psycopg2.extensions.cursor]:
    """One transaction: commit when the block succeeds, roll back when it raises."""
    with connection() as conn:
        factory = psycopg2.extras.RealDictCursor if dict_rows else None
        try:
            with conn.cursor(cursor_factory=factory) as cur:
                yield cur
            conn.commit()
        except BaseException:
            if not conn.closed:
                conn.rollback()
            raise
