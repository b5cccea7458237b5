"""Child process for the multi-process limiter test (spawned: nothing inherited but env)."""

from __future__ import annotations

import math


def run(
    settings_path: str,
    base_url: str,
    api_key: str,
    prefix: str,
    window: float,
    caller: str,
    texts: list[list[str]],
    out,
) -> None:
    import os

    import redis

    from tokpulse.ai.client import Gateway
    from tokpulse.settings import load_settings

    try:
        env = dict(
            os.environ, OPENAI_API_KEY=api_key, OPENAI_BASE_URL=base_url, TOKPULSE_AGENT_CONFIG=settings_path
        )
        settings = load_settings(environ=env)
        gw = Gateway(
            settings,
            redis_client=redis.Redis.from_url(os.environ["REDIS_URL"]),
            key_prefix=prefix,
            window_seconds=window,
        )
        done = 0
        for chunk in texts:
            res = gw.embed(chunk, caller=caller, max_wait=math.inf)
            assert not res.errors, res.errors
            done += len(chunk)
        out.put(("ok", done))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        out.put(("error", f"{type(exc).__name__}: {exc}"))
