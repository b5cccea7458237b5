"""`tokpulse embed` and `tokpulse search`: the pipeline and search from the command line.

    tokpulse embed ./docs docs            # the spec's `generate-embeddings.mjs ./docs docs`
    tokpulse embed refresh docs           # re-read docs' sources, embed changes, delete what is gone
    tokpulse embed ./docs docs --dry-run  # what would be embedded, and its estimated cost
    tokpulse search "deploy to production" --namespace docs [--limit N] [--threshold X] [--no-hybrid] [--json]

Both run in this process against the fleet's database (the embedded one is started if
needed) and go through the AI gateway like the workers do; `embed` drains the same staging
queue as the `embeddings` pool, so a CLI run and running jobs share provider requests.
(A directory literally named `refresh` is embedded with `./refresh`.)"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from tokpulse.settings import Settings

MAX_ISSUE_LINES = 50


class _Bar:
    """tqdm on stderr (off when stderr is not a terminal or with --no-progress)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None
        self.phase = ""
        self.files = 0

    def __call__(self, done: int, total: int, phase: str) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if phase.startswith("reading"):
            self.files += 1
            if self.bar is None:
                self.bar = tqdm(desc="reading", unit=" files", file=sys.stderr, disable=None, leave=False)
                self.phase = "reading"
            self.bar.update(1)
            return
        if self.bar is not None and self.phase != "embedding":
            self.bar.close()
            self.bar = None
        if self.bar is None:
            self.phase = "embedding"
            self.bar = tqdm(desc="embedding", total=total, unit=" chunks", file=sys.stderr, disable=None,
                            dynamic_ncols=True)
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _connect(settings: Settings):
    """Export DATABASE_URL/REDIS_URL; start (and migrate) the embedded services if needed.
    Returns the services this process owns (to stop), or None."""
    from tokpulse.runners import export_urls

    svc = export_urls(settings, start=True)
    if svc is not None and (svc.owns_postgres or svc.owns_redis):
        import os

        from tokpulse.migrate import migrate

        migrate(os.environ["DATABASE_URL"])
    return svc


def _schema_ready() -> str | None:
    from workers import db

    with db.transaction() as cur:
        cur.execute("SELECT to_regclass('ai_embedding_queue') IS NOT NULL")
        if not cur.fetchone()[0]:
            return "the database has no embeddings tables yet; run `tokpulse migrate` first"
    return None


def _print_issues(result: dict[str, Any]) -> None:
    lines = [f"{i['status']}: {i['message']}" for i in result.get("issues", [])]
    lines += [f"failed: {e}" for e in result.get("errors", [])]
    for line in lines[:MAX_ISSUE_LINES]:
        print(line, file=sys.stderr)
    if len(lines) > MAX_ISSUE_LINES:
        print(f"... and {len(lines) - MAX_ISSUE_LINES} more", file=sys.stderr)


def cmd_embed(args, settings: Settings) -> int:
    from tokpulse.ai import AIError
    from tokpulse.embeddings.embedder import GatewayEmbedder
    from tokpulse.embeddings.pipeline import IngestError, IngestOptions, ingest, refresh
    from workers import names

    refreshing = args.path == "refresh"
    try:
        options = IngestOptions(max_file_bytes=args.max_file_bytes, chunk_tokens=args.chunk_tokens,
                                overlap_tokens=args.overlap_tokens, batch_size=args.batch_size)
        options.validate()
    except IngestError as exc:
        print(f"tokpulse embed: {exc}", file=sys.stderr)
        return 2
    svc = _connect(settings)
    bar = _Bar(enabled=not args.no_progress and not args.json)
    try:
        problem = _schema_ready()
        if problem:
            print(f"tokpulse embed: {problem}", file=sys.stderr)
            return 1
        # The CLI waits out shared rate limits instead of failing (there is no task to re-schedule).
        embedder = GatewayEmbedder(settings, caller=names.EMBED_DOCUMENTS, max_wait=math.inf)
        try:
            if refreshing:
                result = refresh(args.namespace, embedder=embedder, options=options, dry_run=args.dry_run,
                                 progress=bar)
            else:
                result = ingest(args.namespace, paths=[args.path], embedder=embedder, options=options,
                                dry_run=args.dry_run, progress=bar)
        except IngestError as exc:
            bar.close()
            print(f"tokpulse embed: {exc}", file=sys.stderr)
            return 2
        except AIError as exc:
            bar.close()
            print(f"tokpulse embed: {exc} (chunks not yet embedded stay queued and are embedded by the next run "
                  "or worker)", file=sys.stderr)
            return 1
        bar.close()
        out = result.as_dict()
        if args.json:
            print(json.dumps(out, indent=2, ensure_ascii=False))
        else:
            _print_issues(out)
            f = result.files
            skipped = ", ".join(f"{k} {v}" for k, v in sorted(f.get("skipped_by_reason", {}).items()))
            print(f"Files: {f.get('read', 0)} read, {f.get('skipped', 0)} skipped"
                  + (f" ({skipped})" if skipped else "") + f", {f.get('failed', 0)} failed")
            if result.dry_run:
                print(f"Dry run: {result.total - result.skipped} chunks ({result.estimated_tokens} tokens) would be "
                      f"embedded with {result.model}; nothing was sent to a provider")
            if refreshing:
                print(f"Deleted: {result.deleted}" + (" (would be)" if result.dry_run else ""))
            print("\n".join(result.lines()))
        return 1 if (result.failed or result.files.get("failed", 0)) else 0
    finally:
        bar.close()
        if svc is not None:
            svc.stop()


def _excerpt(text: str, width: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def cmd_search(args, settings: Settings) -> int:
    from tokpulse.ai import AIError
    from tokpulse.embeddings.embedder import GatewayEmbedder
    from tokpulse.embeddings.search import SearchError, search_dict
    from workers import names

    body: dict[str, Any] = {"query": args.query, "namespace": args.namespace, "limit": args.limit,
                            "threshold": args.threshold, "hybrid": not args.no_hybrid}
    svc = _connect(settings)
    try:
        problem = _schema_ready()
        if problem:
            print(f"tokpulse search: {problem}", file=sys.stderr)
            return 1
        try:
            res = search_dict(body, embedder=GatewayEmbedder(settings, caller=names.SEARCH, max_wait=math.inf))
        except SearchError as exc:
            print(f"tokpulse search: {exc}", file=sys.stderr)
            return 2
        except AIError as exc:
            print(f"tokpulse search: {exc}", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(res, indent=2, ensure_ascii=False))
            return 0
        for w in res["warnings"]:
            print(f"warning: {w}", file=sys.stderr)
        if not res["results"]:
            print(f"no results in namespace {args.namespace!r}")
            return 0
        for n, r in enumerate(res["results"], start=1):
            meta = r["metadata"] or {}
            where = r["source"] or "?"
            if meta.get("start_line"):
                where += f":{meta['start_line']}-{meta.get('end_line', meta['start_line'])}"
            sim = f"{r['similarity']:.3f}" if r["similarity"] is not None else "  -  "
            trail = " > ".join(meta.get("headings") or [])
            print(f"{n:>2}. [{r['match']:<7}] sim {sim}  score {r['score']:.4f}  {where}" + (f"  ({trail})" if trail
                                                                                            else ""))
            print(f"    {_excerpt(r['content'])}")
        return 0
    finally:
        if svc is not None:
            svc.stop()
