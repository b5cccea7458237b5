-- Core schema: the spec's four tables plus what the fleet itself needs.
CREATE EXTENSION IF NOT EXISTS vector;

-- Self-diagnosis and watcher findings (spec: ai_health_metrics).
CREATE TABLE ai_health_metrics (
    id              bigserial PRIMARY KEY,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    source          text NOT NULL,                      -- which component measured it
    metric_type     text NOT NULL,                      -- e.g. latency_spike, deploy_failure
    value           double precision,
    threshold       double precision,
    severity        text NOT NULL DEFAULT 'info'
                    CHECK (severity IN ('info', 'low', 'medium', 'high', 'critical')),
    recommendation  text,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb,
    run_id          text                                -- the job run that produced it
);
CREATE INDEX ai_health_metrics_type_time ON ai_health_metrics (metric_type, recorded_at DESC);

-- Vector store (spec: ai_embeddings). The vector column has no fixed dimension so one
-- table serves several models; `dims` records it and per-dimension HNSW indexes are
-- partial expression indexes (pgvector's documented way to index mixed dimensions).
CREATE TABLE ai_embeddings (
    id              bigserial PRIMARY KEY,
    namespace       text NOT NULL CHECK (namespace <> ''),
    content         text NOT NULL,
    content_hash    text NOT NULL,                      -- sha256 hex of the normalised content
    source          text,                               -- path or URL the chunk came from
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    provider        text NOT NULL,
    model           text NOT NULL,
    dims            integer NOT NULL CHECK (dims > 0),
    embedding       vector NOT NULL,
    fts             tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ai_embeddings_dims_match CHECK (vector_dims(embedding) = dims),
    CONSTRAINT ai_embeddings_namespace_hash UNIQUE (namespace, content_hash)
);
CREATE INDEX ai_embeddings_fts ON ai_embeddings USING gin (fts);
CREATE INDEX ai_embeddings_source ON ai_embeddings (namespace, source);
CREATE INDEX ai_embeddings_hnsw_384 ON ai_embeddings
    USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE dims = 384;
CREATE INDEX ai_embeddings_hnsw_1536 ON ai_embeddings
    USING hnsw ((embedding::vector(1536)) vector_cosine_ops) WHERE dims = 1536;

-- Usage ledger (spec: ai_usage_metrics): one row per provider call or cache hit.
CREATE TABLE ai_usage_metrics (
    id              bigserial PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT now(),
    task_name       text,
    provider        text NOT NULL,
    model           text NOT NULL,
    operation       text NOT NULL CHECK (operation IN ('chat', 'embedding')),
    input_tokens    integer NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens   integer NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cost_usd        numeric(14, 8) NOT NULL DEFAULT 0,
    latency_ms      double precision,
    status          text NOT NULL,                      -- ok, error, rate_limited, refused
    cache_hit       boolean NOT NULL DEFAULT false,
    rate_limited    boolean NOT NULL DEFAULT false,
    request_id      text,
    error           text
);
CREATE INDEX ai_usage_metrics_time ON ai_usage_metrics (created_at);
CREATE INDEX ai_usage_metrics_model_time ON ai_usage_metrics (provider, model, created_at);

-- Cost forecasts (spec: cost_predictions).
CREATE TABLE cost_predictions (
    id                  bigserial PRIMARY KEY,
    created_at          timestamptz NOT NULL DEFAULT now(),
    period_start        date NOT NULL,
    period_end          date NOT NULL,
    current_spend       numeric(14, 4) NOT NULL,
    projected_monthly   numeric(14, 4) NOT NULL,
    budget              numeric(14, 4) NOT NULL,
    deviation_percent   double precision NOT NULL,
    trend               text NOT NULL CHECK (trend IN ('increasing', 'stable', 'decreasing')),
    recommendation      text,
    method              text NOT NULL,                  -- model used for the projection
    details             jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX cost_predictions_time ON cost_predictions (created_at DESC);

-- Every run of a recorded task: what ran, where, how it ended (operators and watchers).
CREATE TABLE job_runs (
    task_id         text PRIMARY KEY,
    task_name       text NOT NULL,
    queue           text,
    worker          text,
    state           text NOT NULL CHECK (state IN ('STARTED', 'SUCCESS', 'FAILURE', 'RETRY', 'REVOKED')),
    attempts        integer NOT NULL DEFAULT 1,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    runtime_ms      double precision,
    error           text,
    result          jsonb
);
CREATE INDEX job_runs_name_time ON job_runs (task_name, started_at DESC);

-- Alerts outbox: findings are written here in the same transaction as the data that
-- caused them, and the alerts pool delivers them (GitHub issues, discussions, comments)
-- with retries, so nothing is lost while GitHub is unreachable.
CREATE TABLE alerts_outbox (
    id              bigserial PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT now(),
    dedup_key       text NOT NULL UNIQUE,
    kind            text NOT NULL,                      -- e.g. budget_exceeded, db_integrity
    channel         text NOT NULL CHECK (channel IN ('github_issue', 'github_discussion', 'pr_comment',
                                                     'release', 'log')),
    severity        text NOT NULL DEFAULT 'medium'
                    CHECK (severity IN ('info', 'low', 'medium', 'high', 'critical')),
    title           text NOT NULL,
    body            text NOT NULL,
    payload         jsonb NOT NULL DEFAULT '{}'::jsonb,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    sent_at         timestamptz,
    external_url    text
);
CREATE INDEX alerts_outbox_pending ON alerts_outbox (next_attempt_at) WHERE status IN ('pending', 'sending');
