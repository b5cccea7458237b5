"""`GET /healthz` for the search API: a database ping that searches cannot starve.

Searches and token checks run on the API's search thread pool and the shared DB pool. If
the health check queued behind them, a few slow searches would make it time out and a
supervisor (a compose healthcheck) would restart a service that is only busy. So the
ping has its own single thread and its own connection (outside the pool, so pool
exhaustion cannot fail it either), with short connect and statement timeouts. Checks
that arrive while a ping is running share its answer instead of queueing behind it, and
the handler gives up after `timeout` seconds (503) even if the thread is still stuck."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import psycopg2

TIMEOUT_SECONDS = 5.0  # what /healthz may take at most; compose's healthcheck allows 10 s
CONNECT_TIMEOUT_SECONDS = 3  # libpq's connect_timeout takes whole seconds
STATEMENT_TIMEOUT_MS = 2000


class HealthCheck:
    """The database ping behind `/healthz`; one per app."""

    def __init__(self, dsn: str | None = None, *, timeout: float = TIMEOUT_SECONDS):
        """`dsn`: the database to ping (default: this process's DATABASE_URL, read when
        the first check connects)."""
        self._dsn = dsn
        self.timeout = timeout
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="api-health")
        self._conn: psycopg2.extensions.connection | None = None
        self._inflight: asyncio.Future | None = None

    async def check(self) -> None:
        """Return when the database answered; raise (TimeoutError or the driver's error) otherwise.
        Runs on the event loop's thread; the blocking ping runs on the health thread."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.get_running_loop().run_in_executor(self._executor, self._ping)
        # shield: a check that times out leaves the ping running for the next check to share.
        await asyncio.wait_for(asyncio.shield(self._inflight), self.timeout)

    def close(self) -> None:
        """Close the connection on the health thread (after any ping still running there)."""
        try:
            self._executor.submit(self._drop)
        except RuntimeError:  # closed already
            return
        self._executor.shutdown(wait=False)

    # -- the health thread only -------------------------------------------------------
    def _connect(self) -> psycopg2.extensions.connection:
        if self._dsn:
            dsn = self._dsn
        else:
            from workers.db import database_url

            dsn = database_url()
        conn = psycopg2.connect(
            dsn, application_name="tokpulse-api-health", connect_timeout=CONNECT_TIMEOUT_SECONDS,
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            # A dead server (no RST) is noticed by TCP keepalives instead of a hung read.
            keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=2,
        )
        conn.autocommit = True
        return conn

    def _ping(self) -> None:
        reused = self._conn is not None and not self._conn.closed
        try:
            self._ping_once()
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            if not reused:
                raise
            # The kept connection may predate a database restart: one try on a fresh one.
            self._ping_once()

    def _ping_once(self) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        try:
            with self._conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
        except Exception:
            self._drop()
            raise

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - already broken
                pass
        self._conn = None
