"""Routing lives here, by stable task name. Call sites never choose a queue."""

from __future__ import annotations

from tokpulse.settings import ConfigError
from workers import names
from workers.pools import DEFAULT_QUEUE, POOLS, PoolSpec

TASK_ROUTES: dict[str, dict[str, str]] = {
    names.PRUNE_HISTORY: {"queue": "default"},
    names.REDACT_TEXT: {"queue": "redaction"},
    names.REDACT_OBJECT: {"queue": "redaction"},
    names.REDACT_BATCH: {"queue": "redaction"},
    names.EMBED_DOCUMENTS: {"queue": "embeddings"},
    names.REFRESH_EMBEDDINGS: {"queue": "embeddings"},
    names.SEARCH: {"queue": "embeddings"},
    names.BUILD_VECTOR_INDEX: {"queue": "embeddings"},
}


def check_routes(routes: dict[str, dict[str, str]] = TASK_ROUTES, pools: dict[str, PoolSpec] = POOLS) -> None:
    """Refuse a routed queue that no pool consumes (the message would sit there forever)."""
    consumed = {p.queue for p in pools.values()}
    for task, route in sorted(routes.items()):
        queue = route.get("queue")
        if queue not in consumed:
            raise ConfigError("task_routes", f"{task} is routed to queue {queue!r}, which no pool consumes")
    if DEFAULT_QUEUE not in consumed:
        raise ConfigError("task_routes", f"no pool consumes the default queue {DEFAULT_QUEUE!r}")


def pool_of_task(task_name: str) -> PoolSpec:
    queue = TASK_ROUTES.get(task_name, {}).get("queue", DEFAULT_QUEUE)
    for spec in POOLS.values():
        if spec.queue == queue:
            return spec
    raise ConfigError("task_routes", f"{task_name} is routed to queue {queue!r}, which no pool consumes")
