"""Health: every pool answers `tokpulse.ping` sent to its queue."""

from __future__ import annotations

import os
import socket

from workers import names
from workers.app import app
from workers.pools import pool_for_queue


def ping_reply(queue: str | None, worker: str | None) -> dict:
    return {
        "pool": pool_for_queue(queue) or os.environ.get("TOKPULSE_POOL") or "unknown",
        "queue": queue,
        "host": socket.gethostname(),
        "worker": worker,
        "pid": os.getpid(),
    }


# Not routed: the caller names the queue (send_task(PING, queue="watchers")), and the
# pool consuming that queue answers. It touches nothing, so acks-early is fine.
@app.task(name=names.PING, bind=True, acks_late=False, soft_time_limit=10, time_limit=20,
          ignore_result=False)
def ping(self) -> dict:
    return ping_reply((self.request.delivery_info or {}).get("routing_key"), self.request.hostname)
