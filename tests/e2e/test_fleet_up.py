"""`tokpulse up` end to end: embedded services, every pool, Flower, outside callers by
name, and a clean stop on SIGINT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
import urllib.request
from base64 import b64encode

import psutil
import pytest

from tests.conftest import PYTHON, ROOT, wait_for
from workers.pools import POOLS

pytestmark = pytest.mark.e2e

OUTSIDE_CALLER = textwrap.dedent(
    """
    import json, sys
    from celery import Celery
    broker = sys.argv[1]
    queues = json.loads(sys.argv[2])
    app = Celery("outside", broker=broker, backend=broker)
    app.conf.update(task_serializer="json", accept_content=["json"], result_accept_content=["json"])
    pending = {q: app.send_task("tokpulse.ping", queue=q) for q in queues}
    answers = {q: r.get(timeout=30) for q, r in pending.items()}
    red = app.send_task("tokpulse.redact_text", args=["Contact john@example.com"], queue="redaction")
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("tokpulse", "workers", "tasks"))
    print(json.dumps({"answers": answers, "leaked": leaked, "redacted": red.get(timeout=30)}))
    """
)


def _fleet_processes(home: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.pid == os.getpid():
                continue
            cmd = " ".join(p.info["cmdline"] or [])
            if home in cmd or p.environ().get("TOKPULSE_HOME") == home:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def test_up_runs_every_pool_and_stops_clean_on_sigint(tmp_path):
    home = str(tmp_path / "home")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "FLOWER_BASIC_AUTH")}
    env.update(TOKPULSE_HOME=home, PYTHONUNBUFFERED="1")
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115
    up = subprocess.Popen([PYTHON, "-m", "tokpulse.cli", "up", "--concurrency", "1"], cwd=ROOT, env=env,
                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.monotonic()
    try:
        def status():
            r = subprocess.run([PYTHON, "-m", "tokpulse.cli", "status", "--json", "--timeout", "3"], cwd=ROOT,
                               env=env, capture_output=True, text=True, timeout=60)
            return (r.returncode, json.loads(r.stdout)) if r.stdout.strip() else (r.returncode, None)

        code, report = wait_for(lambda: (lambda s: s if s[0] == 0 else None)(status()), 120, interval=1,
                                message="status --json to exit 0")
        ready_in = time.monotonic() - t0
        assert ready_in < 120
        assert set(report["pools"]) == set(POOLS)
        for name, p in report["pools"].items():
            assert p["alive"] is True and p["workers"] >= 1 and p["queue"] == POOLS[name].queue
            assert isinstance(p["depth"], int)
        for k in ("broker_url", "result_backend", "database_url", "flower_url", "migrations"):
            assert report[k], k
        assert report["migrations"]["pending"] == []
        assert report["broker_url"].startswith("redis://127.0.0.1:")

        # An outside service: plain Celery, project not imported, tasks by name only.
        r = subprocess.run([PYTHON, "-I", "-c", OUTSIDE_CALLER, report["broker_url"],
                            json.dumps([p.queue for p in POOLS.values()])],
                           cwd=tmp_path, capture_output=True, text=True, timeout=90)
        assert r.returncode == 0, r.stderr[-2000:]
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out["leaked"] == []
        assert out["redacted"] == "Contact [EMAIL_REDACTED]"
        assert {q: a["pool"] for q, a in out["answers"].items()} == {p.queue: n for n, p in POOLS.items()}

        # Flower: 401 without credentials; with them, a worker consumes every pool's queue.
        creds = open(os.path.join(home, "flower_auth")).read().strip()
        url = report["flower_url"] + "/api/workers?refresh=1"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url, timeout=30)
        assert e.value.code == 401
        req = urllib.request.Request(url, headers={"Authorization": "Basic " + b64encode(creds.encode()).decode()})

        def flower_queues():
            with urllib.request.urlopen(req, timeout=30) as resp:
                data = json.load(resp)
            qs = {q["name"] for w in data.values() for q in (w.get("active_queues") or [])}
            return qs if qs >= {p.queue for p in POOLS.values()} else None

        wait_for(flower_queues, 60, interval=2, message="Flower to list every queue")
        assert report["flower_url"].startswith("http://127.0.0.1:")
        # The supervisor restarts a pool that dies.
        fleet = json.loads(open(os.path.join(home, "run", "fleet.json")).read())
        old_pid = fleet["children"]["worker-ai"]
        os.killpg(old_pid, signal.SIGKILL)

        def ai_back():
            now = json.loads(open(os.path.join(home, "run", "fleet.json")).read())["children"]["worker-ai"]
            if now == old_pid:
                return None
            code, rep = status()
            return rep and rep["pools"]["ai"]["alive"]

        wait_for(ai_back, 60, interval=1, message="the ai pool to be restarted")

        listening = {c.laddr.ip for c in psutil.net_connections("tcp") if c.status == "LISTEN"
                     and c.pid in {p.pid for p in _fleet_processes(home)}}
        assert listening and listening <= {"127.0.0.1"}, f"fleet listens beyond loopback: {listening}"
    finally:
        os.killpg(up.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        t_stop = time.monotonic()
        try:
            up.wait(35)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            raise
        finally:
            log.close()
    stopped_in = time.monotonic() - t_stop
    assert stopped_in < 30, stopped_in
    leftovers = wait_for(lambda: not _fleet_processes(home) or None, 5, message="no process left") and []
    assert leftovers == []
    print(f"ready in {ready_in:.1f}s, stopped in {stopped_in:.1f}s")
