-- Embeddings pipeline and search (tokpulse.embeddings, tokpulse.api).

-- Staging for the embedding batcher. `embed_documents` jobs (and `tokpulse embed`) write
-- the chunks they need embedded here; every drainer claims the oldest pending rows of its
-- embedding target with FOR UPDATE SKIP LOCKED, whatever job they came from, so chunks of
-- concurrent jobs share provider requests. A drainer that dies mid-batch loses its
-- transaction and therefore its locks: the rows are pending again for the next drainer.
--
-- UNLOGGED: after a Postgres crash the table is emptied, which loses nothing: rows are
-- pending only while the job that wrote them is unacknowledged (acks-late), so the job is
-- redelivered and writes them again; finished rows only serve counting and expire.
CREATE UNLOGGED TABLE ai_embedding_queue (
    id              bigserial PRIMARY KEY,
    job_id          text NOT NULL,
    target          text NOT NULL,                      -- provider/model expected to embed it
    namespace       text NOT NULL CHECK (namespace <> ''),
    content_hash    text NOT NULL,
    content         text NOT NULL,
    source          text,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    tokens          integer NOT NULL DEFAULT 0 CHECK (tokens >= 0),
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    error           text,
    cost_usd        double precision NOT NULL DEFAULT 0,   -- its share of the ledger cost of its batch
    enqueued_at     timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    CONSTRAINT ai_embedding_queue_job_chunk UNIQUE (job_id, namespace, content_hash)
);
CREATE INDEX ai_embedding_queue_pending ON ai_embedding_queue (target, id) WHERE status = 'pending';
CREATE INDEX ai_embedding_queue_finished ON ai_embedding_queue (finished_at) WHERE status <> 'pending';

-- The paths a namespace was built from, with the reading/chunking options used, so
-- `tokpulse embed refresh NS` can re-read them the same way. Chunks carry the root's id
-- in metadata->'root_id'.
CREATE TABLE ai_embedding_sources (
    id              bigserial PRIMARY KEY,
    namespace       text NOT NULL CHECK (namespace <> ''),
    root            text NOT NULL,                      -- absolute path as the reader saw it
    options         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    refreshed_at    timestamptz,
    CONSTRAINT ai_embedding_sources_root UNIQUE (namespace, root)
);

-- Refresh deletes a root's chunks whose text is gone.
CREATE INDEX ai_embeddings_root ON ai_embeddings (namespace, ((metadata ->> 'root_id')));

-- Bearer tokens for the search API. Only a SHA-256 of the token is stored (tokens are 256
-- random bits, so a fast hash is enough: there is nothing to brute-force); `prefix` is the
-- first characters, shown in listings so an operator can tell tokens apart and revoke one.
CREATE TABLE api_tokens (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL DEFAULT '',
    prefix          text NOT NULL,
    token_hash      text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    namespaces      text[] NOT NULL CHECK (cardinality(namespaces) > 0),   -- '*' = every namespace
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz,
    last_used_at    timestamptz,
    revoked_at      timestamptz
);
CREATE INDEX api_tokens_prefix ON api_tokens (prefix);
