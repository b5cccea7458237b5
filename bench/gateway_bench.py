"""AI gateway benchmark: the fleet-wide limiter and the batcher against the loopback OpenAI
server, side by side with the same workload sent through the `openai` SDK's own retries.

    .venv/bin/python bench/gateway_bench.py            # ~3 minutes
    .venv/bin/python bench/gateway_bench.py --quick    # smaller workload, ~1 minute

Setup (printed with the results):
  * FakeOpenAI (tests/fakes) enforces RPM and TPM per model with continuously refilling
    buckets. The minute is scaled down (default: the per-minute limits apply per 10 s) so a
    run takes minutes; the gateway's limiter gets the same window.
  * The fake's vector maths is replaced by a constant unit vector and text-embedding-3-small
    answers 256 dimensions (what `dimensions=256` gives on the real API): the fake runs in
    this process on a shared CPU, and its pure-Python embedding would otherwise be the
    bottleneck. Token counting, limits, 429s and response sizes stay real.
  * 4 worker processes, each running embedding "tasks" (one `embed()` call each; a task that
    gets RateLimitWait sleeps its countdown and runs again, as a Celery retry would).
  * Peer: the same tasks, packed into the same requests, sent with `openai.OpenAI(max_retries=N)`
    and nothing else (the SDK honours retry-after-ms).

Figures: sustained tokens/minute as a share of the TPM limit (measured after the first
window, when the initial full bucket is spent), share of requests answered 429, requests
per 10k inputs against the lower bound max(n/2048, tokens/300k) per task, and the median
latency of a cache hit (embedding and chat)."""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EMBED_MODEL = "text-embedding-3-small"
CHAT_MODEL = "gpt-4o-mini"
DIMS = 256
WORDS = (
    "deploy latency queue worker redis postgres vector budget token model error rate spike alert "
    "release commit branch pipeline cache embedding namespace schema migration index forecast cost "
    "watcher integrity contract endpoint response request retry backoff timeout throughput region"
).split()


# -- workload --------------------------------------------------------------------------------
def make_task_texts(seed: str, n: int) -> list[str]:
    """n texts of 20..400 words (roughly as many cl100k tokens), unique to this run."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        k = rnd.randint(20, 400)
        out.append(f"{seed}-{i} " + " ".join(rnd.choice(WORDS) for _ in range(k)))
    return out


# -- worker processes -------------------------------------------------------------------------
def _gateway_worker_body(cfg_path, base_url, api_key, prefix, window, tasks, start, out):
    import redis

    from tokpulse.ai import RateLimitWait
    from tokpulse.ai.client import Gateway
    from tokpulse.settings import load_settings

    env = dict(os.environ, OPENAI_API_KEY=api_key, OPENAI_BASE_URL=base_url, TOKPULSE_AGENT_CONFIG=cfg_path)
    gw = Gateway(
        load_settings(environ=env),
        redis_client=redis.Redis.from_url(os.environ["REDIS_URL"]),
        key_prefix=prefix,
        window_seconds=window,
    )
    # Warm up outside the measured model's buckets (SDK import, connection, tokenizer, DB pool).
    gw.embed([f"warm-up {uuid.uuid4().hex}"], caller="bench.warmup", model="text-embedding-3-large")
    texts = [make_task_texts(seed, n) for seed, n in tasks]
    deferrals = errors = 0
    start.wait()
    t0 = time.time()
    for batch in texts:
        while True:
            try:
                res = gw.embed(batch, caller="bench.gateway")
                errors += len(res.errors)
                break
            except RateLimitWait as exc:  # a Celery task would retry itself with this countdown
                deferrals += 1
                time.sleep(exc.seconds + random.uniform(0, 0.2))
    out.put({"deferrals": deferrals, "errors": errors, "elapsed": time.time() - t0})


def _sdk_worker_body(base_url, api_key, max_retries, tasks, start, out):
    import openai

    from tokpulse.ai.batching import BatchLimits, pack
    from tokpulse.ai.tokens import count_many

    client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=120)
    client.embeddings.create(model="text-embedding-3-large", input=[f"warm-up {uuid.uuid4().hex}"])
    plans = []
    for seed, n in tasks:  # the same packing as the gateway, so only the rate limiting differs
        texts = make_task_texts(seed, n)
        plans.append([[texts[i] for i in b] for b in pack(count_many(texts), BatchLimits()).batches])
    failed = 0
    start.wait()
    t0 = time.time()
    for plan in plans:
        for batch in plan:
            try:
                client.embeddings.create(model=EMBED_MODEL, input=batch)
            except openai.APIError:
                failed += 1
    out.put({"failed": failed, "elapsed": time.time() - t0})


def _chat_gateway_worker_body(cfg_path, base_url, api_key, prefix, window, prompts, start, out):
    import redis

    from tokpulse.ai import RateLimitWait
    from tokpulse.ai.client import Gateway
    from tokpulse.settings import load_settings

    env = dict(os.environ, OPENAI_API_KEY=api_key, OPENAI_BASE_URL=base_url, TOKPULSE_AGENT_CONFIG=cfg_path)
    gw = Gateway(
        load_settings(environ=env),
        redis_client=redis.Redis.from_url(os.environ["REDIS_URL"]),
        key_prefix=prefix,
        window_seconds=window,
    )
    gw.chat(
        [{"role": "user", "content": f"warm-up {uuid.uuid4().hex}"}], caller="bench.warmup", model="gpt-4o"
    )
    deferrals = 0
    start.wait()
    t0 = time.time()
    for p in prompts:
        while True:
            try:
                gw.chat([{"role": "user", "content": p}], caller="bench.gateway.chat", max_tokens=50)
                break
            except RateLimitWait as exc:
                deferrals += 1
                time.sleep(exc.seconds + random.uniform(0, 0.2))
    out.put({"deferrals": deferrals, "elapsed": time.time() - t0})


def _chat_sdk_worker_body(base_url, api_key, max_retries, prompts, start, out):
    import openai

    client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=60)
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "warm-up"}])
    failed = 0
    start.wait()
    t0 = time.time()
    for p in prompts:
        try:
            client.chat.completions.create(
                model=CHAT_MODEL, messages=[{"role": "user", "content": p}], max_tokens=50
            )
        except openai.APIError:
            failed += 1
    out.put({"failed": failed, "elapsed": time.time() - t0})


def _guarded(body):
    def run(*args):
        out = args[-1]
        try:
            body(*args)
        except BaseException:  # noqa: BLE001 - reported to the parent, which stops the run
            import traceback

            out.put({"error": traceback.format_exc()})

    return run


def _gateway_worker(*a):
    _guarded(_gateway_worker_body)(*a)


def _sdk_worker(*a):
    _guarded(_sdk_worker_body)(*a)


def _chat_gateway_worker(*a):
    _guarded(_chat_gateway_worker_body)(*a)


def _chat_sdk_worker(*a):
    _guarded(_chat_sdk_worker_body)(*a)


def collect(procs, out, timeout: float = 900) -> list[dict]:
    import queue

    got: list[dict] = []
    deadline = time.time() + timeout
    while len(got) < len(procs):
        try:
            item = out.get(timeout=1)
        except queue.Empty:
            if time.time() > deadline:
                raise SystemExit("bench: workers did not finish in time") from None
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise SystemExit(f"bench: a worker died with exit code {dead[0].exitcode}") from None
            continue
        if "error" in item:
            for p in procs:
                p.terminate()
            raise SystemExit(f"bench: a worker failed:\n{item['error']}")
        got.append(item)
    for p in procs:
        p.join(timeout=30)
    return got


def run_phase(ctx, target, per_worker_args, common_before, common_after=()):
    start = ctx.Event()
    out = ctx.Queue()
    procs = [
        ctx.Process(target=target, args=(*common_before, a, *common_after, start, out))
        for a in per_worker_args
    ]
    for p in procs:
        p.start()
    return procs, start, out  # the caller waits for the warm-ups, then sets `start`


# -- measurement -----------------------------------------------------------------------------
def summarise(records, t0, window, limit_per_window, kind):
    """Sustained rate after the first window (when the initial full bucket is spent) until the
    last accepted request: the least-squares slope of cumulative accepted tokens (or requests)
    over time, sampled every 50 ms. A slope, unlike first/last differences, is not thrown off
    by the sawtooth of large requests."""
    import numpy as np

    ok = sorted((r for r in records if r["status"] == 200), key=lambda r: r["time"])
    total = len(records)
    limited = sum(1 for r in records if r["status"] == 429)
    ta = t0 + window
    tb = ok[-1]["time"] if ok else ta
    rate = share = float("nan")
    if tb - ta >= window / 2:
        times = np.array([r["time"] for r in ok])
        amounts = np.cumsum([(r["prompt_tokens"] if kind == "tokens" else 1) for r in ok])
        grid = np.arange(ta, tb, 0.05)
        idx = np.searchsorted(times, grid, side="right") - 1
        cum = np.where(idx >= 0, amounts[np.clip(idx, 0, None)], 0)
        per_second = float(np.polyfit(grid - ta, cum, 1)[0])
        rate = per_second * window  # per (scaled) minute
        share = rate / limit_per_window
    # Whole run: what was accepted beyond the initial full bucket, over the limit for the run time.
    whole = float("nan")
    if ok and ok[-1]["time"] > t0:
        accepted = sum((r["prompt_tokens"] if kind == "tokens" else 1) for r in ok)
        whole = (accepted - limit_per_window) / (limit_per_window / window * (ok[-1]["time"] - t0))
    return {
        "requests": total,
        "ok": len(ok),
        "429": limited,
        "share_429": limited / total if total else 0.0,
        "sustained_per_min": rate,
        "share_of_limit": share,
        "span": tb - ta,
        "whole_run_share": whole,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller workload (about a minute)")
    ap.add_argument("--window", type=float, default=10.0, help="seconds that stand for one minute")
    ap.add_argument("--tpm", type=int, default=1_500_000, help="embedding tokens per (scaled) minute")
    ap.add_argument("--rpm", type=int, default=600, help="embedding requests per (scaled) minute")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--sdk-retries", type=int, default=20)
    ap.add_argument("--no-chat", action="store_true", help="skip the RPM-bound chat workload")
    ap.add_argument("--dump", default=None, help="write every request the server saw (JSON) to this file")
    args = ap.parse_args()
    tasks_per_worker, task_inputs = (2, 3072) if args.quick else (3, 4096)
    chats_per_worker = 150 if args.quick else 250
    chat_rpm = 300

    os.environ.setdefault("TOKPULSE_LOG_LEVEL", "WARNING")
    import atexit
    import shutil
    import signal

    scratch = Path(tempfile.mkdtemp(prefix="tokpulse-gateway-bench-"))
    services = None

    def cleanup() -> None:  # also after a failure or SIGTERM: no servers or files left behind
        if services is not None:
            services.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        from tokpulse.embedded import EmbeddedServices

        services = EmbeddedServices(scratch / "home")
        urls = services.ensure_started()
        os.environ["DATABASE_URL"], os.environ["REDIS_URL"] = urls.database_url, urls.redis_url
    from tokpulse.migrate import migrate

    migrate(os.environ["DATABASE_URL"])

    from tests.fakes import openai_server
    from tests.fakes.openai_server import FakeOpenAI
    from tokpulse.ai.batching import BatchLimits, lower_bound
    from tokpulse.ai.tokens import count_many

    window = args.window
    openai_server._Bucket.rate = property(lambda self: self.capacity / window)
    openai_server.EMBEDDING_MODELS[EMBED_MODEL] = DIMS
    unit = tuple([1.0 / math.sqrt(DIMS)] * DIMS)
    openai_server.embed_text = lambda model, text, dims: (
        unit if dims == DIMS else tuple([0.0] * (dims - 1) + [1.0])
    )

    run_id = uuid.uuid4().hex[:8]
    workload = [
        [(f"{run_id}-w{w}-t{t}", task_inputs) for t in range(tasks_per_worker)] for w in range(args.workers)
    ]
    # lower bounds: per task (each embed() call packs its own inputs) and for the whole workload
    all_counts: list[int] = []
    lb_tasks = 0
    for worker in workload:
        for seed, n in worker:
            counts = count_many(make_task_texts(seed, n))
            all_counts.extend(counts)
            lb_tasks += lower_bound(counts, BatchLimits())
    n_inputs, n_tokens = len(all_counts), sum(all_counts)
    lb_global = lower_bound(all_counts, BatchLimits())

    cfg = scratch / "agent_config.json"
    cfg.write_text(
        json.dumps(
            {
                "ai": {
                    "rate_limits": {
                        EMBED_MODEL: {"rpm": args.rpm, "tpm": args.tpm},
                        CHAT_MODEL: {"rpm": chat_rpm, "tpm": 10_000_000},
                    }
                }
            }
        )
    )

    ctx = multiprocessing.get_context("spawn")
    results: dict = {}
    timelines: dict = {}
    print(
        f"setup: {args.workers} worker processes; one minute scaled to {window:g} s; "
        f"{EMBED_MODEL} limits RPM {args.rpm:,} / TPM {args.tpm:,} per window; "
        f"{n_inputs:,} inputs, {n_tokens:,} tokens in {sum(len(w) for w in workload)} tasks",
        flush=True,
    )
    with FakeOpenAI(rpm=args.rpm, tpm=args.tpm) as fake:
        for name in ("gateway", "sdk"):
            fake.reset()
            prefix = f"tokpulse:bench:{run_id}:{name}:"
            if name == "gateway":
                procs, start, out = run_phase(
                    ctx, _gateway_worker, workload, (str(cfg), fake.base_url, fake.api_key, prefix, window)
                )
            else:
                procs, start, out = run_phase(
                    ctx, _sdk_worker, workload, (fake.base_url, fake.api_key, args.sdk_retries)
                )
            deadline = time.time() + 120
            while fake.count(status=200) < args.workers and time.time() < deadline:
                time.sleep(0.1)  # every worker's warm-up request answered
            time.sleep(0.5)
            fake.reset()
            t0 = time.time()
            start.set()
            worker_stats = collect(procs, out)
            wall = time.time() - t0
            stats = summarise(fake.requests, t0, window, args.tpm, "tokens")
            stats.update(
                wall=wall,
                workers=worker_stats,
                inputs_ok=sum(r["n_inputs"] for r in fake.requests if r["status"] == 200),
            )
            results[name] = stats
            timelines[name] = [
                {k: r[k] for k in ("time", "status", "prompt_tokens", "n_inputs")} for r in fake.requests
            ]
            print(f"  {name}: done in {wall:.1f} s", flush=True)

        chat = {}
        if not args.no_chat:
            fake.rpm, fake.tpm = chat_rpm, None
            for name in ("gateway", "sdk"):
                fake.reset()
                prompts = [
                    [
                        f"{run_id} {name} w{w} chat {i}: summarise the deploy log in one line"
                        for i in range(chats_per_worker)
                    ]
                    for w in range(args.workers)
                ]
                prefix = f"tokpulse:bench:{run_id}:chat-{name}:"
                if name == "gateway":
                    procs, start, out = run_phase(
                        ctx,
                        _chat_gateway_worker,
                        prompts,
                        (str(cfg), fake.base_url, fake.api_key, prefix, window),
                    )
                else:
                    procs, start, out = run_phase(
                        ctx, _chat_sdk_worker, prompts, (fake.base_url, fake.api_key, args.sdk_retries)
                    )
                deadline = time.time() + 120
                while fake.count(status=200) < args.workers and time.time() < deadline:
                    time.sleep(0.1)
                time.sleep(0.5)
                fake.reset()
                t0 = time.time()
                start.set()
                worker_stats = collect(procs, out)
                stats = summarise(fake.requests, t0, window, chat_rpm, "requests")
                stats.update(wall=time.time() - t0, workers=worker_stats)
                chat[name] = stats
                print(f"  chat {name}: done in {stats['wall']:.1f} s", flush=True)

        # cache hits: one cached text / one cached conversation, answered without the provider
        import redis

        from tokpulse.ai.client import Gateway
        from tokpulse.settings import load_settings

        env = dict(
            os.environ,
            OPENAI_API_KEY=fake.api_key,
            OPENAI_BASE_URL=fake.base_url,
            TOKPULSE_AGENT_CONFIG=str(cfg),
        )
        gw = Gateway(
            load_settings(environ=env),
            redis_client=redis.Redis.from_url(os.environ["REDIS_URL"]),
            key_prefix=f"tokpulse:bench:{run_id}:hits:",
            window_seconds=window,
        )
        text = f"{run_id} cached text for the latency probe"
        msgs = [{"role": "user", "content": f"{run_id} cached question from ops@example.com"}]
        gw.embed([text], caller="bench.cache")
        gw.chat(msgs, caller="bench.cache")
        before = fake.count()
        time.sleep(2)  # let the database settle after the runs above
        for _ in range(50):  # warm-up: connection pool, caches
            gw.embed([text], caller="bench.cache")
            gw.chat(msgs, caller="bench.cache")
        lat_e, lat_c = [], []
        for _ in range(500):
            t = time.perf_counter()
            r = gw.embed([text], caller="bench.cache")
            lat_e.append((time.perf_counter() - t) * 1000)
            assert r.cache_hits == 1
            t = time.perf_counter()
            c = gw.chat(msgs, caller="bench.cache")
            lat_c.append((time.perf_counter() - t) * 1000)
            assert c.cache_hit
        assert fake.count() == before

    if args.dump:
        Path(args.dump).write_text(json.dumps(timelines))

    # -- report --------------------------------------------------------------------------------
    g, s = results["gateway"], results["sdk"]
    per10k = 10_000 / n_inputs
    lb10k_task, lb10k_global = lb_tasks * per10k, lb_global * per10k

    def fmt_share(x):
        return "n/a" if x != x else f"{x * 100:.1f}%"

    print()
    print(
        "AI gateway benchmark (loopback OpenAI; one minute scaled to "
        f"{window:g} s: every per-minute figure below is per {window:g} s window)"
    )
    print(
        f"workload: {args.workers} processes x {tasks_per_worker} tasks x {task_inputs:,} inputs = "
        f"{n_inputs:,} inputs, {n_tokens:,} tokens; embedding limit TPM {args.tpm:,}, RPM {args.rpm:,}"
    )
    print(
        f"lower bound (2,048 inputs / 300,000 tokens per request): {lb_tasks} requests packing each task "
        f"separately, {lb_global} for the whole workload at once"
    )
    print()
    rows = [
        ("", "gateway", f"SDK retries only (max_retries={args.sdk_retries})"),
        (
            "sustained tokens/min (after 1st window)",
            f"{g['sustained_per_min']:,.0f}",
            f"{s['sustained_per_min']:,.0f}",
        ),
        ("  share of the TPM limit", fmt_share(g["share_of_limit"]), fmt_share(s["share_of_limit"])),
        (
            "whole run: (accepted - first bucket) / (limit x time)",
            fmt_share(g["whole_run_share"]),
            fmt_share(s["whole_run_share"]),
        ),
        ("requests sent (all)", f"{g['requests']}", f"{s['requests']}"),
        (
            "requests answered 429",
            f"{g['429']} ({g['share_429'] * 100:.2f}%)",
            f"{s['429']} ({s['share_429'] * 100:.2f}%)",
        ),
        ("successful requests per 10k inputs", f"{g['ok'] * per10k:.2f}", f"{s['ok'] * per10k:.2f}"),
        ("all requests per 10k inputs", f"{g['requests'] * per10k:.2f}", f"{s['requests'] * per10k:.2f}"),
        (
            f"  vs per-task lower bound ({lb10k_task:.2f}/10k)",
            f"{g['ok'] / lb_tasks:.3f}x ok, {g['requests'] / lb_tasks:.3f}x all",
            f"{s['ok'] / lb_tasks:.3f}x ok, {s['requests'] / lb_tasks:.3f}x all",
        ),
        (
            f"  vs whole-workload lower bound ({lb10k_global:.2f}/10k)",
            f"{g['ok'] / lb_global:.3f}x ok",
            f"{s['ok'] / lb_global:.3f}x ok",
        ),
        ("inputs embedded", f"{g['inputs_ok']:,}", f"{s['inputs_ok']:,}"),
        ("wall time", f"{g['wall']:.1f} s", f"{s['wall']:.1f} s"),
        (
            "task re-schedules (RateLimitWait) / failed requests",
            f"{sum(w['deferrals'] for w in g['workers'])} / {sum(w['errors'] for w in g['workers'])}",
            f"- / {sum(w['failed'] for w in s['workers'])}",
        ),
    ]
    if chat:
        cg, cs = chat["gateway"], chat["sdk"]
        rows += [
            (f"chat, RPM-bound (RPM {chat_rpm}, {args.workers}x{chats_per_worker} requests):", "", ""),
            (
                "  sustained requests/min (after 1st window)",
                f"{cg['sustained_per_min']:,.1f}",
                f"{cs['sustained_per_min']:,.1f}",
            ),
            ("  share of the RPM limit", fmt_share(cg["share_of_limit"]), fmt_share(cs["share_of_limit"])),
            ("  whole run share", fmt_share(cg["whole_run_share"]), fmt_share(cs["whole_run_share"])),
            (
                "  requests answered 429",
                f"{cg['429']} of {cg['requests']} ({cg['share_429'] * 100:.2f}%)",
                f"{cs['429']} of {cs['requests']} ({cs['share_429'] * 100:.2f}%)",
            ),
            ("  wall time", f"{cg['wall']:.1f} s", f"{cs['wall']:.1f} s"),
        ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    for r in rows:
        print(f"{r[0]:<{w0}}  {r[1]:>{w1}}  {r[2]}")
    print()
    print(
        f"cache hit, median of 500: embedding {statistics.median(lat_e):.2f} ms, "
        f"chat {statistics.median(lat_c):.2f} ms (redaction, lookup and ledger row included)"
    )
    print()
    checks = [
        ("sustained TPM >= 95% of the limit", g["share_of_limit"] >= 0.95),
        ("requests answered 429 <= 0.5%", g["share_429"] <= 0.005),
        ("requests <= 1.05 x lower bound (per task)", g["requests"] <= 1.05 * lb_tasks),
        ("cache hit <= 2 ms median", max(statistics.median(lat_e), statistics.median(lat_c)) <= 2.0),
    ]
    for label, ok in checks:
        print(f"target {label}: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
