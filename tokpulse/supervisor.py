"""`tokpulse up`: the whole fleet in one command.

Starts the embedded services when DATABASE_URL/REDIS_URL are unset, applies migrations,
then runs beat, one worker per pool and Flower as child processes, restarting any that
dies. SIGINT or SIGTERM stops every child (warm shutdown, then SIGKILL of whatever is
left after a grace period) and then the embedded services, within 30 s in all.

Children run in their own process groups so a terminal's Ctrl-C reaches only this
supervisor, which then shuts them down in order; PR_SET_PDEATHSIG makes each child get
SIGTERM should the supervisor itself be killed."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tokpulse.embedded import EmbeddedServices, _write_json
from tokpulse.settings import Settings
from workers.pools import POOLS

GRACE_SECONDS = 20  # warm shutdown budget before SIGKILL; services get the rest of 30 s
RESTART_BACKOFF_MAX = 30.0


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0
    extra_env: dict[str, str] = field(default_factory=dict)

    def start(self, env: dict[str, str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab", buffering=0)  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            self.argv,
            env={**env, **self.extra_env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_set_pdeathsig,
        )
        log.close()
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


def _tokpulse(*args: str) -> list[str]:
    return [sys.executable, "-m", "tokpulse.cli", *args]


def plan_children(settings: Settings, args) -> list[Child]:
    logs = settings.home / "logs"
    pools = [p.strip() for p in (args.pools or "").split(",") if p.strip()]
    unknown = [p for p in pools if p not in POOLS]
    if unknown:
        from tokpulse.settings import ConfigError

        raise ConfigError("--pools", f"unknown pool {unknown[0]!r} (known: {', '.join(POOLS)})")
    children = []
    if not args.no_beat:
        children.append(Child("beat", _tokpulse("beat"), logs / "beat.log"))
    for pool in pools:
        argv = _tokpulse("worker", "--pool", pool)
        if args.concurrency:
            argv += ["--concurrency", str(args.concurrency)]
        children.append(Child(f"worker-{pool}", argv, logs / f"worker-{pool}.log",
                              extra_env={"TOKPULSE_POOL": pool}))
    if not args.no_flower:
        children.append(Child("flower", _tokpulse("flower"), logs / "flower.log"))
    if not getattr(args, "no_api", False):
        from tokpulse.api.server import api_port

        children.append(Child("api", _tokpulse("api", "--port", str(api_port(settings))), logs / "api.log"))
    return children


class Supervisor:
    def __init__(self, settings: Settings, children: list[Child], env: dict[str, str]):
        self.settings = settings
        self.children = children
        self.env = env
        self.stopping = threading.Event()
        self.state_path = settings.home / "run" / "fleet.json"

    def write_state(self, **extra) -> None:
        _write_json(self.state_path, {
            "supervisor_pid": os.getpid(),
            "children": {c.name: c.proc.pid for c in self.children if c.proc},
            **extra,
        })

    def shutdown(self) -> None:
        self.stopping.set()
        live = [c for c in self.children if c.alive()]
        for c in live:
            c.signal_group(signal.SIGTERM)  # Celery: warm shutdown
        deadline = time.monotonic() + GRACE_SECONDS
        for c in live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for c in self.children:
            # SIGKILL the whole group: catches pool children a dead parent left behind.
            c.signal_group(signal.SIGKILL)
            if c.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    c.proc.wait(timeout=2)


def cmd_up(args, settings: Settings) -> int:
    from tokpulse.migrate import MigrationError, migrate
    from tokpulse.runners import flower_credentials, flower_port
    from workers.routing import check_routes

    check_routes()
    children = plan_children(settings, args)  # validates --pools before anything starts
    settings.home.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    svc: EmbeddedServices | None = None
    env = dict(os.environ)
    env["TOKPULSE_HOME"] = str(settings.home)
    env["PYTHONUNBUFFERED"] = "1"

    stop = threading.Event()
    sup: Supervisor | None = None

    def _on_signal(signum, _frame):
        stop.set()
        if sup is not None:
            sup.stopping.set()

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if settings.embedded:
            svc = EmbeddedServices(settings.home)
            urls = svc.ensure_started()
            env["DATABASE_URL"], env["REDIS_URL"] = urls.database_url, urls.redis_url
            print(f"tokpulse up: embedded Postgres+pgvector and Redis under {settings.home}", flush=True)
        if stop.is_set():
            return 130
        try:
            applied = migrate(env["DATABASE_URL"])
        except MigrationError as exc:
            print(f"tokpulse up: {exc}", file=sys.stderr)
            return 1
        print(f"tokpulse up: migrations {'applied: ' + ', '.join(applied) if applied else 'up to date'}",
              flush=True)

        extra = {}
        if not args.no_flower:
            creds, generated = flower_credentials(settings)
            env["FLOWER_BASIC_AUTH"] = creds
            port = flower_port(settings)
            flower_url = f"http://{'127.0.0.1' if settings.bind in ('0.0.0.0', '::') else settings.bind}:{port}"
            extra["flower_url"] = flower_url
            user, _, password = creds.partition(":")
            where = f" (kept in {settings.home / 'flower_auth'})" if not settings.flower_basic_auth else ""
            print(f"tokpulse up: Flower at {flower_url}  user: {user}  password: {password}{where}", flush=True)

        if not getattr(args, "no_api", False):
            from tokpulse.api.server import api_port, api_url

            extra["api_url"] = api_url(settings, api_port(settings))
            print(f"tokpulse up: search API at {extra['api_url']}/search  (tokens: tokpulse token create "
                  "--namespace NS)", flush=True)

        sup = Supervisor(settings, children, env)
        for c in children:
            c.start(env)
        sup.write_state(started_at=time.time(), **extra)
        print(f"tokpulse up: started {', '.join(c.name for c in children)} in "
              f"{time.monotonic() - t0:.1f}s; logs in {settings.home / 'logs'}; Ctrl-C stops everything",
              flush=True)
        # Children are started; the loop restarts any that dies until a signal arrives.
        for c in children:
            c.next_start = 0.0
        if not stop.is_set():
            _loop(sup, stop)
        return 0
    finally:
        t1 = time.monotonic()
        if sup is not None:
            print("tokpulse up: stopping the fleet...", file=sys.stderr, flush=True)
            sup.shutdown()
        if svc is not None:
            svc.stop()
        with contextlib.suppress(FileNotFoundError):
            (settings.home / "run" / "fleet.json").unlink()
        if sup is not None:
            print(f"tokpulse up: stopped in {time.monotonic() - t1:.1f}s", file=sys.stderr, flush=True)
        for s, h in old.items():
            signal.signal(s, h)


def _loop(sup: Supervisor, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        now = time.monotonic()
        for c in sup.children:
            if c.alive() or stop.is_set():
                continue
            if c.next_start == 0.0:
                code = c.proc.returncode if c.proc else None
                delay = 0.0 if now - c.started_at > 60 else min(RESTART_BACKOFF_MAX, 2.0 ** c.restarts)
                print(f"tokpulse up: {c.name} exited ({code}); restarting in {delay:.0f}s "
                      f"(log: {c.log_path})", file=sys.stderr, flush=True)
                c.next_start = now + delay
            if now >= c.next_start:
                c.restarts += 1
                c.next_start = 0.0
                c.start(sup.env)
                with contextlib.suppress(OSError):
                    state = json.loads(sup.state_path.read_text())
                    state["children"] = {x.name: x.proc.pid for x in sup.children if x.proc}
                    _write_json(sup.state_path, state)
