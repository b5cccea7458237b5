"""Global rate limiter: requests/minute and tokens/minute per model, shared through Redis by
every worker process and machine (Celery's own `rate_limit` is per process).

Each model has two continuously refilling buckets (refilling limit/60 per second, like
OpenAI's own accounting). One Lua script refills them, computes when the request fits and,
if that is within the caller's `max_wait`, takes the request and its tokens *now*, letting
the buckets go negative. The caller then sleeps exactly the returned wait. Reservations are
therefore first come, first served and paced at the refill rate, with no polling and no
thundering herd; a caller that would wait too long reserves nothing and gets
`RateLimitWait` (a task re-schedules itself).

Time is Redis's `TIME`, so machines with skewed clocks agree. Two margins keep us under the
provider's own bucket: refill runs `headroom` (2%) below the limit, and the bucket holds at
most `burst` (90%) of it, because while the provider's bucket is full the delay between our
reservation and its count is refill it never grants.

A 429 sets a shared cool-down from `retry-after(-ms)`, pulls our bucket down to what the
provider said it holds (less the reservations it has not yet seen, kept in a pending set)
and bumps an epoch so callers already sleeping on a reservation queue again instead of
firing into the cool-down: every caller slows, not just the one refused. After each call
the estimate is reconciled with the response's `usage` (refund or extra charge)."""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from dataclasses import dataclass

from tokpulse.ai.errors import RateLimitWait, RequestTooLarge

# KEYS: state hash, pending zset (reservations not yet answered: "<id>:<tokens>" scored by expiry)
# ARGV: caps, rates (per ms), tokens, max wait ms, ttl ms, member, grace ms
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local rcap, tcap = tonumber(ARGV[1]), tonumber(ARGV[2])
local rrate, trate = tonumber(ARGV[3]), tonumber(ARGV[4])
local need, max_wait, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local s = redis.call('HMGET', KEYS[1], 'r', 't', 'ts', 'cool', 'epoch')
local r = tonumber(s[1]) or rcap
local tk = tonumber(s[2]) or tcap
local ts = tonumber(s[3]) or now
local cool = tonumber(s[4]) or 0
local epoch = tonumber(s[5]) or 0
local el = math.max(0, now - ts)
r = math.min(rcap, r + el * rrate)
tk = math.min(tcap, tk + el * trate)
local wait = math.max(0, (1 - r) / rrate, (need - tk) / trate, cool - now)
if wait > max_wait then
  return {0, tostring(wait), epoch}
end
redis.call('HSET', KEYS[1], 'r', tostring(r - 1), 't', tostring(tk - need), 'ts', tostring(now))
redis.call('ZADD', KEYS[2], now + wait + tonumber(ARGV[9]), ARGV[8])
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl + wait))
redis.call('PEXPIRE', KEYS[2], math.ceil(ttl + wait + tonumber(ARGV[9])))
return {1, tostring(wait), epoch}
"""

# ARGV: caps, rates, delta requests, delta tokens (positive = charge, negative = refund),
# cool-down ms (0 = none), kind of 429 ('requests'/'tokens'/''), tokens the refused call asked,
# ttl, member to forget ('' = none)
_ADJUST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local rcap, tcap = tonumber(ARGV[1]), tonumber(ARGV[2])
local rrate, trate = tonumber(ARGV[3]), tonumber(ARGV[4])
local dr, dt = tonumber(ARGV[5]), tonumber(ARGV[6])
local cool_ms, kind, asked, ttl = tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local s = redis.call('HMGET', KEYS[1], 'r', 't', 'ts', 'cool', 'epoch')
local r = tonumber(s[1]) or rcap
local tk = tonumber(s[2]) or tcap
local ts = tonumber(s[3]) or now
local cool = tonumber(s[4]) or 0
local epoch = tonumber(s[5]) or 0
local el = math.max(0, now - ts)
r = math.min(rcap, r + el * rrate - dr)
tk = math.min(tcap, tk + el * trate - dt)
if ARGV[11] ~= '' then redis.call('ZREM', KEYS[2], ARGV[11]) end
if cool_ms > 0 then
  -- The provider's bucket reaches `asked` in cool_ms. Ours may hold no more than that, less
  -- what is reserved but not yet answered (the provider has not counted it yet): those
  -- callers are made to queue again (epoch), so the schedule restarts from the truth.
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local pend_req, pend_tok = 0, 0
  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    pend_req = pend_req + 1
    pend_tok = pend_tok + (tonumber(string.match(m, ':(%d+)$')) or 0)
  end
  cool = math.max(cool, now + cool_ms)
  if kind == 'requests' then r = math.min(r, 1 - cool_ms * rrate - pend_req) end
  if kind == 'tokens' then tk = math.min(tk, asked - cool_ms * trate - pend_tok) end
  epoch = epoch + 1
  redis.call('HSET', KEYS[1], 'cool', tostring(cool), 'epoch', epoch)
end
redis.call('HSET', KEYS[1], 'r', tostring(r), 't', tostring(tk), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl + math.max(0, cool - now)))
return tostring(math.max(0, cool - now))
"""

_STATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local s = redis.call('HMGET', KEYS[1], 'cool', 'epoch')
return {tostring(math.max(0, (tonumber(s[1]) or 0) - now)), tonumber(s[2]) or 0}
"""


@dataclass(frozen=True)
class Limits:
    rpm: int
    tpm: int


@dataclass
class Reservation:
    model: str
    limits: Limits
    tokens: int
    wait: float  # seconds the caller was asked to wait before sending
    member: str = ""  # its entry among the pending reservations
    epoch: int = 0  # the limiter's 429 count when reserved: a change means "queue again"


class RateLimiter:
    """Per-model RPM/TPM buckets in Redis, shared by every process using the same prefix.

    Life of a call: `acquire` (reserve + sleep), send, then exactly one of `finish`
    (answered: reconcile with usage), `refund` (refused before it counted) or `penalize`
    (429). A reservation never finished expires from the pending set after `grace`."""

    def __init__(
        self,
        redis_client,
        *,
        prefix: str = "tokpulse:ai:rl:",
        window_seconds: float = 60.0,
        headroom: float = 0.02,
        burst: float = 0.9,
        grace_seconds: float = 180.0,
        sleep=time.sleep,
    ):
        if not 0 <= headroom < 1 or not 0 < burst <= 1:
            raise ValueError("headroom must be in [0, 1) and burst in (0, 1]")
        self._redis = redis_client
        self._prefix = prefix
        self.window = float(window_seconds)  # 60 in production; tests and the bench scale it
        self.headroom = headroom
        self.burst = burst
        self._grace_ms = grace_seconds * 1000.0
        self._sleep = sleep
        self._reserve = redis_client.register_script(_RESERVE)
        self._adjust = redis_client.register_script(_ADJUST)
        self._state = redis_client.register_script(_STATE)

    def key(self, model: str) -> str:
        return f"{self._prefix}{model}"

    def _keys(self, model: str) -> list[str]:
        return [self.key(model), self.key(model) + ":pending"]

    def _shape(self, limits: Limits) -> tuple[float, float, float, float]:
        # Refill runs `headroom` below the limit. The bucket holds at most `burst` of it: while
        # the provider's bucket is full, the time between our reservation and its count is
        # refill it never gives; a smaller burst absorbs that after every idle spell.
        f = 1.0 - self.headroom
        c = min(f, self.burst)
        window_ms = self.window * 1000.0
        return (
            max(1.0, limits.rpm * c),
            max(1.0, limits.tpm * c),
            limits.rpm * f / window_ms,
            limits.tpm * f / window_ms,
        )

    def _ttl_ms(self) -> int:
        return int(self.window * 2000 + 1000)

    def capacity_tokens(self, limits: Limits) -> int:
        """The most tokens one request may ask for (the whole bucket)."""
        return int(self._shape(limits)[1])

    def reserve(self, model: str, limits: Limits, tokens: int, max_wait: float) -> Reservation:
        """Take 1 request + `tokens` now and return how long to wait before sending; or raise
        `RateLimitWait` (nothing taken) when that wait exceeds `max_wait` seconds."""
        rcap, tcap, rrate, trate = self._shape(limits)
        if tokens > tcap:
            raise RequestTooLarge(
                f"{model}: one request of {tokens} tokens exceeds the whole per-minute budget "
                f"({int(tcap)} usable of tpm {limits.tpm}); split the input or raise ai.rate_limits"
            )
        max_wait_ms = 1e15 if math.isinf(max_wait) else max(0.0, max_wait) * 1000.0
        member = f"{uuid.uuid4().hex}:{int(tokens)}"
        ok, wait_ms, epoch = self._reserve(
            keys=self._keys(model),
            args=[rcap, tcap, rrate, trate, tokens, max_wait_ms, self._ttl_ms(), member, self._grace_ms],
        )
        wait = float(wait_ms) / 1000.0
        if not int(ok):
            raise RateLimitWait(wait, model)
        return Reservation(model, limits, tokens, wait, member, int(epoch))

    def acquire(self, model: str, limits: Limits, tokens: int, max_wait: float) -> Reservation:
        """`reserve`, sleep the wait; queue again if a 429 came in meanwhile."""
        deadline = time.monotonic() + max_wait
        while True:
            res = self.reserve(model, limits, tokens, max(0.0, deadline - time.monotonic()))
            try:
                if res.wait > 0:
                    self._sleep(res.wait)
                cool, epoch = self.state(model)
            except BaseException:
                # A time limit or a Redis error while waiting: give the slot back rather than
                # leave a reservation nobody will use or reconcile.
                with contextlib.suppress(Exception):
                    self.refund(res)
                raise
            if cool <= 0 and epoch == res.epoch:
                return res
            # A 429 arrived while we slept: our slot was computed from a bucket the provider
            # has since contradicted. Give it back and queue again behind the cool-down, so
            # sleepers are re-paced from the corrected bucket instead of firing into it.
            self.refund(res)

    def state(self, model: str) -> tuple[float, int]:
        """(seconds of cool-down left, number of 429s seen) for the model."""
        cool, epoch = self._state(keys=self._keys(model))
        return float(cool) / 1000.0, int(epoch)

    def cooldown_remaining(self, model: str) -> float:
        return self.state(model)[0]

    def _apply(
        self,
        res: Reservation,
        *,
        requests: float = 0,
        tokens: float = 0,
        cool: float = 0,
        kind: str = "",
        asked: int = 0,
        forget: bool = True,
    ) -> float:
        rcap, tcap, rrate, trate = self._shape(res.limits)
        left = self._adjust(
            keys=self._keys(res.model),
            args=[
                rcap,
                tcap,
                rrate,
                trate,
                requests,
                tokens,
                cool * 1000.0,
                kind,
                asked,
                self._ttl_ms(),
                res.member if forget else "",
            ],
        )
        return float(left) / 1000.0

    def finish(self, res: Reservation, actual_tokens: int | None = None) -> None:
        """The provider answered: forget the pending entry and charge (or refund) the
        difference between the estimate and its `usage`."""
        delta = 0 if actual_tokens is None else int(actual_tokens) - res.tokens
        self._apply(res, tokens=delta)
        if actual_tokens is not None:
            res.tokens = int(actual_tokens)

    def reconcile(self, res: Reservation, actual_tokens: int) -> None:
        self.finish(res, actual_tokens)

    def refund(self, res: Reservation) -> None:
        """Give back a reservation the provider never charged (refused before it counted)."""
        self._apply(res, requests=-1, tokens=-res.tokens)
        res.tokens = 0

    def penalize(self, res: Reservation, retry_after: float, kind: str = "") -> float:
        """A 429: refund the refused call, start a shared cool-down of `retry_after` seconds,
        pull the named bucket ('requests' or 'tokens') down to what the provider reported, and
        make callers still waiting queue again. Returns the cool-down left."""
        asked = res.tokens if kind == "tokens" else 1
        left = self._apply(
            res,
            requests=-1,
            tokens=-res.tokens,
            cool=max(0.001, retry_after),
            kind=kind if kind in ("requests", "tokens") else "",
            asked=asked,
        )
        res.tokens = 0
        return left
