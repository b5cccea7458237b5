"""`tokpulse status [--json]`: services, migrations and whether every pool answers."""

from __future__ import annotations

import json
import os
import sys
import time

from tokpulse.embedded import _read_json, resolve_urls
from tokpulse.settings import Settings, mask_url
from workers import names
from workers.pools import POOLS


def collect(settings: Settings, timeout: float = 10.0) -> dict:
    urls, _ = resolve_urls(settings, start=False)
    fleet = _read_json(settings.home / "run" / "fleet.json")
    out: dict = {
        "home": str(settings.home),
        "embedded": settings.embedded,
        "broker_url": mask_url(urls.redis_url) if urls else None,
        "result_backend": mask_url(urls.redis_url) if urls else None,
        "database_url": mask_url(urls.database_url) if urls else None,
        "flower_url": fleet.get("flower_url"),
        "api_url": fleet.get("api_url"),
        "supervisor_pid": fleet.get("supervisor_pid"),
        "migrations": None,
        "pools": {name: {"queue": p.queue, "depth": None, "workers": 0, "alive": False} for name, p in POOLS.items()},
        "errors": [],
    }
    if urls is None:
        out["errors"].append(f"no DATABASE_URL/REDIS_URL and no embedded services running under {settings.home}")
        return out

    from tokpulse.migrate import status as migration_status

    try:
        out["migrations"] = migration_status(urls.database_url)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        text = str(exc).strip()
        out["errors"].append(f"database: {text.splitlines()[0] if text else type(exc).__name__}")

    os.environ["REDIS_URL"] = urls.redis_url
    os.environ["DATABASE_URL"] = urls.database_url
    from celery import Celery

    # A bare client app, exactly what an outside caller would use: no task imports.
    client = Celery("tokpulse-status", broker=urls.redis_url, backend=urls.redis_url)
    client.conf.update(task_serializer="json", accept_content=["json"], result_accept_content=["json"],
                       broker_connection_retry_on_startup=False, broker_connection_max_retries=1,
                       broker_transport_options={"socket_connect_timeout": 3})
    try:
        with client.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
            for name, p in POOLS.items():
                out["pools"][name]["depth"] = conn.default_channel.client.llen(p.queue)
    except Exception as exc:  # noqa: BLE001
        out["errors"].append(f"redis: {type(exc).__name__}: {exc}")
        return out

    # Pings first (each pool's queue, by name, as an outside caller would), then ask
    # the workers which queues they consume while the pings travel.
    pending = {name: client.send_task(names.PING, queue=p.queue, expires=timeout) for name, p in POOLS.items()}
    nodes: dict[str, set[str]] = {name: set() for name in POOLS}
    try:
        active = client.control.inspect(timeout=min(3.0, timeout)).active_queues() or {}
    except Exception as exc:  # noqa: BLE001
        active = {}
        out["errors"].append(f"inspect: {type(exc).__name__}")
    for node, queues in active.items():
        for q in queues or []:
            for name, p in POOLS.items():
                if q.get("name") == p.queue:
                    nodes[name].add(node)
    deadline = time.monotonic() + timeout
    for name, res in pending.items():
        try:
            reply = res.get(timeout=max(0.1, deadline - time.monotonic()), propagate=True)
        except Exception:  # noqa: BLE001 - no answer in time: not alive
            continue
        if isinstance(reply, dict) and reply.get("pool") == name:
            out["pools"][name]["alive"] = True
            out["pools"][name]["answered_by"] = reply.get("worker")
            if reply.get("worker"):
                nodes[name].add(reply["worker"])
    for name in POOLS:
        out["pools"][name]["workers"] = len(nodes[name])
    # read again after the pings: a fleet that was starting when this began has written it by now
    fleet = _read_json(settings.home / "run" / "fleet.json") or fleet
    for key in ("flower_url", "api_url", "supervisor_pid"):
        out[key] = fleet.get(key)
    return out


def cmd_status(args, settings: Settings) -> int:
    report = collect(settings, timeout=args.timeout)
    ok = all(p["alive"] for p in report["pools"].values())
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"home:        {report['home']} ({'embedded' if report['embedded'] else 'external services'})")
        print(f"broker:      {report['broker_url']}")
        print(f"database:    {report['database_url']}")
        print(f"flower:      {report['flower_url']}")
        m = report["migrations"] or {}
        print(f"migrations:  {len(m.get('applied', []))} applied, {len(m.get('pending', []))} pending")
        print(f"{'pool':<12}{'queue':<12}{'depth':>7}{'workers':>9}  alive")
        for name, p in report["pools"].items():
            print(f"{name:<12}{p['queue']:<12}{str(p['depth']):>7}{p['workers']:>9}  {'yes' if p['alive'] else 'NO'}")
        for e in report["errors"]:
            print(f"error: {e}", file=sys.stderr)
    return 0 if ok else 1
