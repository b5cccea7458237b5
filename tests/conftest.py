"""Test harness shared by every layer.

Before collection, the session gets a PostgreSQL+pgvector and a Redis: the ones named by
DATABASE_URL/REDIS_URL when both are set, else the fleet's own embedded services started
under a temporary TOKPULSE_HOME (the same code path as `tokpulse up`). Migrations are
applied once. Fixtures start real worker/beat processes for the end-to-end layer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

pytest_plugins = ["tests.fakes.fixtures"]

_services = None
_home: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _services, _home
    os.environ.setdefault("TOKPULSE_LOG_LEVEL", "WARNING")
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        db_url = os.environ["DATABASE_URL"]
    else:
        from tokpulse.embedded import EmbeddedServices

        _home = Path(tempfile.mkdtemp(prefix="tokpulse-test-"))
        _services = EmbeddedServices(_home)
        urls = _services.ensure_started()
        os.environ["DATABASE_URL"] = urls.database_url
        os.environ["REDIS_URL"] = urls.redis_url
        os.environ["TOKPULSE_HOME"] = str(_home)
        db_url = urls.database_url
    from tokpulse.migrate import migrate

    migrate(db_url)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _services is not None:
        _services.stop()
    if _home is not None:
        shutil.rmtree(_home, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url() -> str:
    return os.environ["DATABASE_URL"]


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ["REDIS_URL"]


@pytest.fixture
def redis_client(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def clean_queues(redis_client) -> None:
    """Empty every pool queue (and unacked bookkeeping) so a test sees only its messages."""
    from workers.pools import POOLS

    for p in POOLS.values():
        redis_client.delete(p.queue)
    redis_client.delete("unacked", "unacked_index", "unacked_mutex")


@pytest.fixture
def fresh_database(database_url) -> Iterator[str]:
    """A brand-new empty database on the same server, dropped afterwards."""
    import psycopg2
    from psycopg2 import sql

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(database_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = database_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


def client_app(redis_url: str):
    """A bare Celery client, as an outside service would build one."""
    from celery import Celery

    app = Celery("test-client", broker=redis_url, backend=redis_url)
    app.conf.update(task_serializer="json", accept_content=["json"], result_accept_content=["json"])
    return app


class ProcessHandle:
    def __init__(self, proc: subprocess.Popen, log: Path):
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 20) -> None:
        import signal

        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture
def spawn(tmp_path) -> Iterator:
    """Start a command as a process-group leader with the test environment; every
    process started is killed (group-wide) at teardown."""
    handles: list[ProcessHandle] = []

    def _spawn(argv: list[str], *, env: dict[str, str] | None = None, name: str = "proc") -> ProcessHandle:
        log = tmp_path / f"{name}-{len(handles)}.log"
        fh = open(log, "wb")  # noqa: SIM115
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        fh.close()
        h = ProcessHandle(proc, log)
        handles.append(h)
        return h

    yield _spawn
    for h in reversed(handles):
        h.stop(timeout=10)


def wait_for(predicate, timeout: float, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


@pytest.fixture
def start_worker(spawn, redis_url):
    """Start a real worker for a pool and wait until it answers tokpulse.ping."""

    def _start(pool: str = "default", *, app: str | None = None, concurrency: int = 1,
               env: dict[str, str] | None = None, hostname: str | None = None) -> ProcessHandle:
        from workers.pools import POOLS

        spec = POOLS[pool]
        node = hostname or f"{pool}-{uuid.uuid4().hex[:6]}@%h"
        if app:
            argv = [PYTHON, "-m", "celery", "-A", app, "worker", "-Q", spec.queue, "-n", node, "-c",
                    str(concurrency), "--prefetch-multiplier", str(spec.prefetch_multiplier), "-E",
                    "--without-mingle", "--without-gossip", "-l", "INFO"]
        else:
            argv = [PYTHON, "-m", "tokpulse.cli", "worker", "--pool", pool, "--concurrency", str(concurrency),
                    "--hostname", node]
        h = spawn(argv, env={"TOKPULSE_POOL": pool, "TOKPULSE_LOG_LEVEL": "INFO", **(env or {})},
                  name=f"worker-{pool}")
        client = client_app(redis_url)

        def answered():
            if h.proc.poll() is not None:
                raise AssertionError(f"worker exited {h.proc.returncode}:\n{h.output()[-3000:]}")
            try:
                return client.send_task("tokpulse.ping", queue=spec.queue, expires=5).get(timeout=2)
            except Exception:  # noqa: BLE001 - not up yet
                return None

        wait_for(answered, 60, interval=0.1, message=f"{pool} worker to answer ping")
        return h

    return _start
