"""One worker pool per workload. Each pool consumes exactly one queue of the same name
and carries the worker settings that fit its work."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PoolSpec:
    name: str
    queue: str
    concurrency: int
    prefetch_multiplier: int
    soft_time_limit: int  # seconds
    time_limit: int  # hard, seconds
    description: str

    @property
    def long_running(self) -> bool:
        return self.prefetch_multiplier == 1


# Long tasks take prefetch 1 so one slow job never holds a second one hostage on the
# same process; short CPU-bound jobs (redaction) prefetch a few to keep the pipe full.
POOLS: dict[str, PoolSpec] = {
    p.name: p
    for p in (
        PoolSpec("embeddings", "embeddings", 2, 1, 600, 660, "embedding batcher: chunk, embed, upsert"),
        PoolSpec("watchers", "watchers", 2, 1, 900, 960, "nightly watchers: DB integrity, API contract, AI perf"),
        PoolSpec("ai", "ai", 2, 1, 300, 360, "AI analysis: self-diagnosis, insights, release notes"),
        PoolSpec("forecast", "forecast", 1, 1, 300, 360, "cost forecaster"),
        PoolSpec("redaction", "redaction", 2, 4, 60, 90, "privacy guard jobs for other services"),
        PoolSpec("alerts", "alerts", 1, 4, 60, 90, "alerts outbox delivery (GitHub issues, discussions)"),
        PoolSpec("default", "default", 1, 4, 120, 180, "housekeeping and everything unrouted"),
    )
}

DEFAULT_QUEUE = "default"

# Redis redelivers an unacked message after the visibility timeout. It must exceed every
# hard time limit, or a long acks-late task would be handed to a second worker while the
# first is still running it.
VISIBILITY_TIMEOUT = 2 * max(p.time_limit for p in POOLS.values()) + 600


def pool_for_queue(queue: str | None) -> str | None:
    for spec in POOLS.values():
        if spec.queue == queue:
            return spec.name
    return None
