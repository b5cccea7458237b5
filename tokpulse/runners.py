"""`tokpulse worker|beat|flower|services`: one fleet process each, in the foreground.

Each resolves the services first (environment, else running embedded services, else it
starts the embedded ones and stops them when it exits), then hands over to Celery."""

from __future__ import annotations

import os
import secrets
import signal
import sys
import threading
from pathlib import Path

from tokpulse.embedded import EmbeddedServices, Ports, resolve_urls
from tokpulse.settings import Settings
from workers.pools import POOLS


def export_urls(settings: Settings, *, start: bool = True) -> EmbeddedServices | None:
    """Put DATABASE_URL/REDIS_URL in this process's environment; returns the embedded
    services this process now owns (to stop on exit), if any."""
    urls, svc = resolve_urls(settings, start=start)
    if urls is None:
        return None
    os.environ["DATABASE_URL"] = urls.database_url
    os.environ["REDIS_URL"] = urls.redis_url
    return svc


def worker_argv(pool: str, *, concurrency: int | None, hostname: str | None, log_level: str) -> list[str]:
    spec = POOLS[pool]
    return [
        "worker",
        "--queues", spec.queue,
        "--hostname", hostname or f"{spec.name}@%h",
        "--concurrency", str(concurrency or spec.concurrency),
        "--prefetch-multiplier", str(spec.prefetch_multiplier),
        "--soft-time-limit", str(spec.soft_time_limit),
        "--time-limit", str(spec.time_limit),
        "--task-events",
        "--loglevel", log_level,
        "--without-mingle",  # pools are independent; mingle only adds start-up latency
    ]


def cmd_worker(args, settings: Settings) -> int:
    svc = export_urls(settings)
    os.environ["TOKPULSE_POOL"] = args.pool
    try:
        from workers.app import app

        return app.worker_main(worker_argv(args.pool, concurrency=args.concurrency, hostname=args.hostname,
                                           log_level=settings.log_level)) or 0
    finally:
        if svc is not None:
            svc.stop()


def cmd_beat(args, settings: Settings) -> int:
    svc = export_urls(settings)
    try:
        from workers.app import app

        schedule_db = settings.home / "run" / "celerybeat-schedule"  # unused by RedBeat, kept out of cwd
        schedule_db.parent.mkdir(parents=True, exist_ok=True)
        return app.start(["beat", "--loglevel", settings.log_level, "--schedule", str(schedule_db)]) or 0
    finally:
        if svc is not None:
            svc.stop()


def flower_credentials(settings: Settings) -> tuple[str, bool]:
    """FLOWER_BASIC_AUTH, else credentials generated once and kept (0600) in the home.
    Returns (user:password, generated_now)."""
    if settings.flower_basic_auth:
        return settings.flower_basic_auth, False
    path = settings.home / "flower_auth"
    try:
        value = path.read_text().strip()
        if ":" in value:
            return value, False
    except FileNotFoundError:
        pass
    settings.home.mkdir(parents=True, exist_ok=True)
    value = f"admin:{secrets.token_urlsafe(18)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value, True


def flower_port(settings: Settings, requested: int | None = None) -> int:
    return requested or Ports(settings.home).claim("flower", in_use_ok=True)


def cmd_flower(args, settings: Settings) -> int:
    svc = export_urls(settings)
    creds, _ = flower_credentials(settings)
    # Passed through the environment, never argv: argv is world-readable in `ps`.
    os.environ["FLOWER_BASIC_AUTH"] = creds
    port = flower_port(settings, args.port)
    try:
        from workers.app import app

        return app.start(["flower", f"--address={settings.bind}", f"--port={port}",
                          "--purge_offline_workers=60"]) or 0
    finally:
        if svc is not None:
            svc.stop()


def cmd_services(args, settings: Settings) -> int:
    """Start the embedded services and hold them until SIGINT/SIGTERM."""
    if not settings.embedded:
        print("DATABASE_URL and REDIS_URL are set: nothing embedded to run", file=sys.stderr)
        return 1
    svc = EmbeddedServices(settings.home)
    urls = svc.ensure_started()
    from tokpulse.migrate import migrate

    migrate(urls.database_url)
    print(f"DATABASE_URL={urls.database_url}\nREDIS_URL={urls.redis_url}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        svc.stop()
    return 0


def home_path(settings: Settings, *parts: str) -> Path:
    return settings.home.joinpath(*parts)
