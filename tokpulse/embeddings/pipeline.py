"""Ingest and refresh: read -> chunk -> skip what is stored -> stage -> drain -> upsert.

The embedding batcher (why a staging table)
-------------------------------------------
A job does not call the provider for its own chunks. It writes the chunks that are not
stored yet to `ai_embedding_queue` and then *drains* the queue: it locks the oldest
pending rows for its embedding target with `FOR UPDATE SKIP LOCKED` (up to `batch_size`,
from whichever jobs wrote them), embeds them in one gateway call (which packs them into
provider-sized requests under the fleet-wide rate limits), bulk-upserts the vectors and
marks the rows done, all in one transaction. Every job of every worker drains the same
queue, so chunks of concurrent jobs share provider requests instead of each document
costing a request. A job is finished when none of its own rows is pending; rows that
another drainer holds are waited for.

Crash safety: the claim, the upsert and the "done" mark commit together. A worker killed
mid-batch loses its transaction, Postgres releases the row locks, and the rows are pending
again; the task (acks-late) is redelivered, re-stages its chunks (a no-op per
`(job_id, namespace, content_hash)`) and drains. Vectors the gateway already paid for come
from its cache, and `INSERT ... ON CONFLICT (namespace, content_hash) DO NOTHING` makes a
repeated upsert harmless: nothing lost, nothing duplicated.

Identity and dedup: a chunk is `namespace + sha256(normalised original text)`. Unchanged
chunks are never staged, so they cost no provider call; if they moved (another position or
file), their metadata is updated in place. What is stored and served is the privacy
guard's redaction of the chunk (the same text the provider embedded), so search never
hands out a secret that happened to be in a document.

Cost: each drained gateway call reports the dollars it wrote to the usage ledger; that sum
is shared among the call's chunks by tokens and kept on their queue rows, so a job's
`Cost` is its part of the ledger's figures even when its chunks travelled with another
job's."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tokpulse.embeddings import store
from tokpulse.embeddings.chunking import DEFAULT_MAX_TOKENS, DEFAULT_OVERLAP_TOKENS, Chunk, chunk_document
from tokpulse.embeddings.embedder import EmbedBatch, Embedder
from tokpulse.embeddings.reader import DEFAULT_MAX_FILE_BYTES, Issue, ReadReport, read_inline, read_paths

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]  # (done, total, phase)
DEFAULT_BATCH = 512
MAX_NAMESPACE_CHARS = 200


class IngestError(ValueError):
    """Bad request to the pipeline (one line: what, and what to do)."""


@dataclass
class IngestOptions:
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    chunk_tokens: int = DEFAULT_MAX_TOKENS
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS
    batch_size: int = DEFAULT_BATCH  # chunks per drain transaction (the gateway splits per provider limits)
    linger_seconds: float = 0.0  # wait this long before the first drain so concurrent jobs' chunks join
    redact: bool = True  # store the privacy guard's redaction of each chunk

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> IngestOptions:
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise IngestError(f"unknown option {sorted(unknown)[0]!r} (known: "
                              f"{', '.join(sorted(cls.__dataclass_fields__))})")
        try:
            opts = cls(**d)
        except TypeError as exc:
            raise IngestError(f"bad options: {exc}") from None
        opts.validate()
        return opts

    def validate(self) -> None:
        for name in ("max_file_bytes", "chunk_tokens", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise IngestError(f"{name} must be a positive integer (got {v!r})")
        if not isinstance(self.overlap_tokens, int) or not 0 <= self.overlap_tokens < self.chunk_tokens // 2:
            raise IngestError(f"overlap_tokens must be between 0 and chunk_tokens/2 (got {self.overlap_tokens!r})")
        if self.chunk_tokens < 48 or self.chunk_tokens > 8000:
            raise IngestError(f"chunk_tokens must be between 48 and 8000 (got {self.chunk_tokens})")
        if self.batch_size > 2048:
            raise IngestError(f"batch_size must be at most 2048 (got {self.batch_size})")

    def chunking(self) -> dict[str, int]:
        """What determines chunk boundaries (recorded per root so refresh cuts the same way)."""
        return {"max_file_bytes": self.max_file_bytes, "chunk_tokens": self.chunk_tokens,
                "overlap_tokens": self.overlap_tokens}


@dataclass
class IngestResult:
    namespace: str
    total: int = 0  # distinct chunks the input produced
    processed: int = 0  # embedded and stored by this job
    skipped: int = 0  # already stored (unchanged): no provider call
    failed: int = 0  # chunks that could not be embedded or stored
    cost_usd: float = 0.0  # from the usage ledger (dry run: the estimate)
    deleted: int = 0  # refresh: chunks whose source text is gone
    dry_run: bool = False
    estimated_tokens: int = 0  # dry run: tokens that would be embedded
    model: str | None = None
    files: dict[str, Any] = field(default_factory=dict)
    issues: list[dict[str, str]] = field(default_factory=list)  # files/documents skipped or failed
    errors: list[str] = field(default_factory=list)  # chunk failures (source: reason)

    def as_dict(self) -> dict[str, Any]:
        """The job's return value: the spec's five result fields first, then the details."""
        d = asdict(self)
        out = {"namespace": self.namespace, "Total": self.total, "Processed": self.processed,
               "Skipped": self.skipped, "Failed": self.failed, "Cost": round(self.cost_usd, 8)}
        for k in ("deleted", "dry_run", "estimated_tokens", "model", "files", "issues", "errors"):
            out[k] = d[k]
        return out

    def lines(self) -> list[str]:
        """The spec's result lines."""
        cost = f"${self.cost_usd:.4f}" if self.cost_usd == 0 or self.cost_usd >= 0.0001 else f"${self.cost_usd:.8f}"
        return [f"Total: {self.total}", f"Processed: {self.processed}", f"Skipped: {self.skipped}",
                f"Failed: {self.failed}", f"Cost: {cost}" + (" (estimated)" if self.dry_run else "")]


def check_namespace(namespace: Any) -> str:
    if not isinstance(namespace, str) or not namespace.strip():
        raise IngestError("namespace must be a non-empty string")
    if len(namespace) > MAX_NAMESPACE_CHARS or any(ord(c) < 32 for c in namespace):
        raise IngestError(f"namespace must be at most {MAX_NAMESPACE_CHARS} printable characters")
    return namespace


# -- preparing chunks -----------------------------------------------------------------------------

@dataclass
class Prepared:
    chunks: list[Chunk]
    hashes: list[str]
    report: ReadReport
    chunk_failures: list[Issue] = field(default_factory=list)


def prepare(report: ReadReport, options: IngestOptions, *, root_ids: dict[str, int] | None = None,
            on_document: Callable[[str], None] | None = None) -> Prepared:
    """Chunk every document; drop chunks repeated within the input (first one wins)."""
    chunks: list[Chunk] = []
    hashes: list[str] = []
    seen: set[str] = set()
    failures: list[Issue] = []
    for doc in report.documents:
        try:
            got = chunk_document(doc, max_tokens=options.chunk_tokens, overlap_tokens=options.overlap_tokens)
        except (RecursionError, ValueError) as exc:
            failures.append(Issue(doc.source, "failed", "unchunkable", f"{doc.source}: could not be chunked ({exc})"))
            continue
        root_path = doc.metadata.get("path")
        for c in got:
            if root_ids and root_path:
                rid = root_ids.get(root_path)
                if rid is not None:
                    c.metadata["root_id"] = rid
            h = c.content_hash
            if h in seen:
                continue
            seen.add(h)
            chunks.append(c)
            hashes.append(h)
        if on_document is not None:
            on_document(doc.source)
    return Prepared(chunks, hashes, report, failures)


def _redactor(enabled: bool) -> Callable[[str], str]:
    if not enabled:
        return lambda s: s
    from tokpulse.privacy import get_privacy_guard
    from tokpulse.settings import load_settings

    # The same guard the gateway uses: strict mode and custom patterns apply to the stored
    # (and served) text exactly as they do to what the provider sees.
    privacy = load_settings().agent.privacy
    guard = get_privacy_guard(strict_mode=privacy.strict_mode, config=privacy)
    return guard.redact


# -- the drain ------------------------------------------------------------------------------------

@dataclass
class DrainBatch:
    claimed: int
    embedded: int
    failed: int
    cost_usd: float
    jobs: int


def _fails_the_batch(exc: Exception) -> bool:
    """A non-transient error that is about these inputs (the provider refused the request's
    content: 400/413/422, or an answer that cannot be used) fails the claimed chunks. Anything
    else -- bad credentials, an unknown or missing model, no provider, no privacy guard -- is
    about the setup: the chunks go back to pending (the transaction rolls back) and the job
    fails with the error, so fixing the setup and re-running loses nothing, and other jobs'
    chunks that travelled in the same batch are not marked failed for it."""
    from tokpulse.ai import MalformedResponse, ProviderError

    if isinstance(exc, MalformedResponse):
        return True
    return isinstance(exc, ProviderError) and getattr(exc, "status", None) in (400, 413, 422)


def drain_once(embedder: Embedder, *, batch_size: int = DEFAULT_BATCH) -> DrainBatch | None:
    """Claim one batch of pending chunks (any job), embed, upsert, mark. None: nothing to claim."""
    from tokpulse.ai import AIError, DimensionMismatch, check_namespace_dims
    from workers import db

    with db.connection() as conn:
        try:
            with conn.cursor() as cur:
                rows = store.claim(cur, embedder.target, batch_size)
                if not rows:
                    conn.rollback()
                    return None
                # Chunks another job stored since they were staged: done, nothing to embed.
                # Looked up under a savepoint that is rolled back, which releases the share
                # locks on the namespaces' partitions: held through the provider call, the
                # one on DEFAULT would keep a new namespace from getting its partition.
                by_ns_rows: dict[str, list[store.QueuedChunk]] = {}
                for r in rows:
                    by_ns_rows.setdefault(r.namespace, []).append(r)
                cur.execute("SAVEPOINT tp_lookup")
                for ns, rs in by_ns_rows.items():
                    have = store.existing(cur, ns, [r.content_hash for r in rs])
                    for r in rs:
                        r.stored = r.content_hash in have
                cur.execute("ROLLBACK TO SAVEPOINT tp_lookup")
                todo = [r for r in rows if not r.stored]
                done: list[tuple[int, float]] = [(r.id, 0.0) for r in rows if r.stored]
                failed: list[tuple[int, str]] = []
                cost = 0.0
                if todo:
                    try:
                        out: EmbedBatch | None = embedder.embed([r.content for r in todo])
                    except AIError as exc:
                        if getattr(exc, "transient", False) or not _fails_the_batch(exc):
                            raise  # the rows go back to pending with the rollback
                        out = None
                        failed += [(r.id, str(exc)) for r in todo]
                    if out is not None:
                        cost = float(out.cost_usd)
                        by_ns: dict[str, list[int]] = {}
                        for k, r in enumerate(todo):
                            if out.vectors[k] is None:
                                failed.append((r.id, out.errors.get(k, "not embedded")))
                            else:
                                by_ns.setdefault(r.namespace, []).append(k)
                        billed = sum(max(1, todo[k].tokens) for ks in by_ns.values() for k in ks) or 1
                        # Namespaces in a fixed order: each takes its namespace lock (one writer
                        # decides an empty namespace's dimension), and two drainers taking them in
                        # opposite orders would deadlock.
                        for ns, ks in sorted(by_ns.items()):
                            cur.execute("SAVEPOINT ns_batch")
                            try:
                                store.lock_namespace(cur, ns)
                                check_namespace_dims(cur, ns, out.dims, provider=out.provider, model=out.model)
                                store.upsert_embeddings(cur, [
                                    (ns, todo[k].content, todo[k].content_hash, todo[k].source, todo[k].metadata,
                                     out.provider, out.model, out.dims, out.vectors[k]) for k in ks])
                                cur.execute("RELEASE SAVEPOINT ns_batch")
                            except (DimensionMismatch, db_errors()) as exc:
                                cur.execute("ROLLBACK TO SAVEPOINT ns_batch")
                                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                                failed += [(todo[k].id, msg) for k in ks]
                                continue
                            done += [(todo[k].id, cost * max(1, todo[k].tokens) / billed) for k in ks]
                store.finish(cur, done, failed)
            conn.commit()
        except BaseException:
            if not conn.closed:
                conn.rollback()
            raise
    return DrainBatch(len(rows), len(done), len(failed), cost, len({r.job_id for r in rows}))


def db_errors() -> type[Exception]:
    import psycopg2

    return psycopg2.IntegrityError


IndexBuilder = Callable[[str], None]  # builds (or schedules the build of) a namespace's vector index


def build_unless_loading(namespace: str) -> tuple[bool, store.IndexBuild | None]:
    """(still loading, what was built): the namespace's vector index is built once no job
    has chunks of it pending; None when there was nothing to build."""
    from workers import db

    with db.transaction() as cur:
        if store.namespace_loading(cur, namespace):
            return True, None
        return False, store.ensure_vector_index(cur, namespace)


def build_index_now(namespace: str) -> None:
    """Build the namespace's vector index here and now, unless another job is still loading
    it (the last one builds: an index built while another job loads would take that job's
    rows one by one). A failed build is logged, not raised: the chunks are stored and
    searchable (exactly), and housekeeping builds the index later."""
    try:
        _loading, built = build_unless_loading(namespace)
    except Exception as exc:  # noqa: BLE001 - see above
        log.warning("namespace %r: building its vector index failed (%s: %s); housekeeping retries it",
                    namespace, type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        return
    if built is not None:
        log.info("built the vector index of namespace %r: %d rows of %d dims in %.1fs", namespace, built.rows,
                 built.dims, built.seconds)


def stage_and_wait(embedder: Embedder, job_id: str, namespace: str, staged: Sequence[tuple[Chunk, str, str]], *,
                   options: IngestOptions, progress: Progress | None = None, already_done: int = 0,
                   total: int = 0, poll_seconds: float = 0.2,
                   build_index: IndexBuilder | None = None) -> store.JobStats:
    """Stage `staged` under `job_id`, then drain until none of the job's rows is pending;
    then `build_index(namespace)` (default: build_index_now)."""
    from workers import db

    with db.transaction() as cur:
        store.ensure_partition(cur, namespace)  # a new namespace: its own table, loaded before it is indexed
    with db.transaction() as cur:
        store.purge_finished(cur)
        store.enqueue(cur, job_id, embedder.target, namespace, staged)
    if options.linger_seconds > 0:
        time.sleep(options.linger_seconds)
    while True:
        batch = drain_once(embedder, batch_size=options.batch_size)
        with db.transaction() as cur:
            stats = store.job_stats(cur, job_id)
        if progress is not None:
            progress(already_done + stats.done + stats.failed, total, "embedding")
        if stats.pending == 0:
            if progress is not None:
                progress(already_done + stats.done + stats.failed, total, "indexing")
            (build_index or build_index_now)(namespace)
            return stats
        if batch is None:
            time.sleep(poll_seconds)  # our remaining rows are in another drainer's batch


def unbuilt_idle_namespaces(*, idle_seconds: int = 3600) -> list[str]:
    """Namespaces whose own partition has rows but no vector index, and no chunk staged in
    the last `idle_seconds` (their load ended without the index: the job died after its
    last batch, or its build failed). A namespace still loading is left alone."""
    from workers import db

    with db.transaction() as cur:
        namespaces = store.unbuilt_namespaces(cur)
        cur.execute("SELECT DISTINCT namespace FROM ai_embedding_queue WHERE status = 'pending' "
                    "AND enqueued_at > now() - make_interval(secs => %s)", (idle_seconds,))
        loading = {r[0] for r in cur.fetchall()}
    return [ns for ns in namespaces if ns not in loading]


def build_missing_indexes(*, idle_seconds: int = 3600) -> tuple[list[store.IndexBuild], dict[str, str]]:
    """Build the vector index of every unbuilt, idle namespace here (see
    unbuilt_idle_namespaces). Returns (builds, {namespace: error}); one failure does not
    stop the others."""
    from workers import db

    built, failed = [], {}
    for ns in unbuilt_idle_namespaces(idle_seconds=idle_seconds):
        try:
            with db.transaction() as cur:
                b = store.ensure_vector_index(cur, ns)
        except Exception as exc:  # noqa: BLE001 - reported per namespace
            failed[ns] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            continue
        if b is not None:
            built.append(b)
    return built, failed


# -- ingest and refresh ------------------------------------------------------------------------------

def _finish_result(result: IngestResult, prepared: Prepared, report: ReadReport) -> None:
    result.files = report.summary()
    result.issues = [i.as_dict() for i in report.issues + prepared.chunk_failures]


def _run(namespace: str, prepared: Prepared, embedder: Embedder, *, job_id: str, options: IngestOptions,
         dry_run: bool, progress: Progress | None, result: IngestResult,
         build_index: IndexBuilder | None = None) -> tuple[list[str], list[str]]:
    """Skip stored chunks, stage and drain the rest. Returns (current hashes, sources with failures)."""
    from workers import db

    chunks, hashes = prepared.chunks, prepared.hashes
    result.total = len(chunks)
    result.model = embedder.target
    with db.transaction() as cur:
        stored = store.existing(cur, namespace, hashes)
    new: list[tuple[Chunk, str]] = []
    moves: list[tuple[str, str | None, dict]] = []
    for c, h in zip(chunks, hashes, strict=True):
        got = stored.get(h)
        if got is None:
            new.append((c, h))
        elif got[0] != c.source or got[1] != c.metadata:
            moves.append((h, c.source, c.metadata))
    result.skipped = len(chunks) - len(new)
    if progress is not None:
        progress(result.skipped, result.total, "embedding")
    if dry_run:
        result.dry_run = True
        result.estimated_tokens = sum(c.tokens for c, _ in new)
        result.cost_usd = embedder.estimate_cost(result.estimated_tokens)
        result.processed = 0
        return hashes, []
    if moves:
        with db.transaction() as cur:
            store.relocate(cur, namespace, moves)
    redact = _redactor(options.redact)
    staged = [(c, h, redact(c.content)) for c, h in new]
    failed_sources: list[str] = []
    if staged:
        stats = stage_and_wait(embedder, job_id, namespace, staged, options=options, progress=progress,
                               already_done=result.skipped, total=result.total, build_index=build_index)
        result.processed = stats.done
        result.failed = stats.failed
        result.cost_usd = stats.cost_usd
        if stats.failed:
            with db.transaction() as cur:
                fails = store.job_failures(cur, job_id)
            result.errors = [f"{s or '?'}: {e}" for s, e in fails]
            failed_sources = sorted({s for s, _ in fails if s})
    return hashes, failed_sources


def ingest(namespace: str, *, documents: Iterable[Any] | None = None, paths: Iterable[str] | None = None,
           embedder: Embedder, options: IngestOptions | None = None, job_id: str | None = None,
           dry_run: bool = False, progress: Progress | None = None,
           build_index: IndexBuilder | None = None) -> IngestResult:
    """Embed `documents` (inline) and/or the files under `paths` into `namespace`.

    Paths are recorded as the namespace's sources (for `refresh`). Returns the counts; files
    and documents that were skipped or failed are listed in `issues`, chunks that failed
    in `errors`; neither stops the rest."""
    namespace = check_namespace(namespace)
    options = options or IngestOptions()
    options.validate()
    job_id = job_id or f"cli-{uuid.uuid4()}"
    documents = list(documents or [])
    paths = [str(p) for p in (paths or [])]
    if not documents and not paths:
        raise IngestError("nothing to embed: give documents or paths")
    result = IngestResult(namespace=namespace)
    report = read_inline(documents, max_bytes=options.max_file_bytes) if documents else ReadReport()
    root_ids: dict[str, int] = {}
    for p in paths:
        r = read_paths([p], max_bytes=options.max_file_bytes,
                       on_file=(lambda s: progress(0, 0, f"reading {s}")) if progress else None)
        report.documents += r.documents
        report.issues += r.issues
        report.ignored_dirs += r.ignored_dirs
        root = Path(p).expanduser()
        if root.exists() and not dry_run:
            from workers import db

            with db.transaction() as cur:
                rid = store.record_root(cur, namespace, str(root.resolve()), options.chunking())
            for d in r.documents:
                root_ids[d.metadata["path"]] = rid
    prepared = prepare(report, options, root_ids=root_ids)
    _run(namespace, prepared, embedder, job_id=job_id, options=options, dry_run=dry_run, progress=progress,
         result=result, build_index=build_index)
    _finish_result(result, prepared, report)
    return result


def refresh(namespace: str, *, embedder: Embedder, options: IngestOptions | None = None,
            job_id: str | None = None, dry_run: bool = False, progress: Progress | None = None,
            build_index: IndexBuilder | None = None) -> IngestResult:
    """Re-read the namespace's recorded sources, embed only what changed, delete chunks whose
    source text is gone (a source that could not be read this time keeps its chunks)."""
    from workers import db

    namespace = check_namespace(namespace)
    base = options or IngestOptions()
    job_id = job_id or f"cli-{uuid.uuid4()}"
    with db.transaction() as cur:
        known = store.roots(cur, namespace)
    if not known:
        raise IngestError(f"namespace {namespace!r} has no recorded sources to refresh (embed a path into it "
                          f"first: tokpulse embed PATH {namespace})")
    result = IngestResult(namespace=namespace)
    report = ReadReport()
    prepared_all = Prepared([], [], report)
    gone: list[store.Root] = []
    present: list[store.Root] = []
    for root in known:
        opts = IngestOptions(**{**asdict(base), **{k: v for k, v in root.options.items()
                                                   if k in IngestOptions.__dataclass_fields__}})
        opts.validate()
        if not Path(root.root).exists():
            gone.append(root)
            report.issues.append(Issue(root.root, "skipped", "gone", f"{root.root}: no longer exists; its chunks "
                                                                      "are deleted"))
            continue
        present.append(root)
        r = read_paths([root.root], max_bytes=opts.max_file_bytes)
        report.documents += r.documents
        report.issues += r.issues
        report.ignored_dirs += r.ignored_dirs
        p = prepare(r, opts, root_ids={d.metadata["path"]: root.id for d in r.documents})
        seen = set(prepared_all.hashes)
        for c, h in zip(p.chunks, p.hashes, strict=True):
            if h not in seen:
                seen.add(h)
                prepared_all.chunks.append(c)
                prepared_all.hashes.append(h)
        prepared_all.chunk_failures += p.chunk_failures
    hashes, failed_sources = _run(namespace, prepared_all, embedder, job_id=job_id, options=base, dry_run=dry_run,
                                  progress=progress, result=result, build_index=build_index)
    protect = sorted(set(failed_sources) | {i.source for i in report.issues if i.status == "failed"} |
                     {i.source for i in prepared_all.chunk_failures})
    root_ids = [r.id for r in present]
    with db.transaction() as cur:
        if dry_run:
            result.deleted = store.count_stale(cur, namespace, root_ids, hashes, protect) + \
                store.count_stale(cur, namespace, [r.id for r in gone], [], [])
        else:
            result.deleted = store.delete_stale(cur, namespace, root_ids, hashes, protect)
            if gone:
                result.deleted += store.delete_stale(cur, namespace, [r.id for r in gone], [], [])
                for r in gone:
                    store.forget_root(cur, r.id)
            store.mark_refreshed(cur, root_ids)
    _finish_result(result, prepared_all, report)
    return result
