-- ai_embeddings partitioned by namespace (pgvector's advice for a filter column with many
-- values: "consider partitioning on the filter column").
--
-- Why: every query filters on one namespace, so each namespace gets its own table
-- (partition) and its own HNSW graph. A search walks a graph holding only that namespace
-- (no candidates thrown away by the filter), and a new namespace can be bulk-loaded the
-- way pgvector recommends -- rows first, index afterwards -- instead of inserting every
-- row into a graph that already spans the whole table (tokpulse.embeddings.store:
-- ensure_partition, ensure_vector_index). Each dedicated partition is created by the
-- pipeline, named ai_embeddings_ns_<sha256(namespace)[:20]>, with a CHECK constraint on
-- its namespace; once its vector index exists, the index's expression (a cast to the
-- namespace's dimension) refuses vectors of another size: the one-dimension-per-namespace
-- rule needs no per-row trigger there.
--
-- The existing table becomes the DEFAULT partition, with its rows, its partial HNSW
-- indexes (384/1536) and its per-row dimension trigger: namespaces written before this
-- migration, or by anything that inserts a new namespace directly, live there and behave
-- exactly as before.

ALTER TABLE ai_embeddings RENAME TO ai_embeddings_default;
ALTER TABLE ai_embeddings_default DROP CONSTRAINT ai_embeddings_pkey;  -- the parent's key includes namespace
ALTER TABLE ai_embeddings_default RENAME CONSTRAINT ai_embeddings_namespace_hash TO ai_embeddings_default_namespace_hash;
ALTER INDEX ai_embeddings_fts RENAME TO ai_embeddings_default_fts;
ALTER INDEX ai_embeddings_source RENAME TO ai_embeddings_default_source;
ALTER INDEX ai_embeddings_root RENAME TO ai_embeddings_default_root;
ALTER INDEX ai_embeddings_namespace_dims RENAME TO ai_embeddings_default_namespace_dims;
ALTER INDEX ai_embeddings_hnsw_384 RENAME TO ai_embeddings_default_hnsw_384;
ALTER INDEX ai_embeddings_hnsw_1536 RENAME TO ai_embeddings_default_hnsw_1536;

-- Same columns and CHECK constraint names as before (a partition must carry the parent's).
CREATE TABLE ai_embeddings (
    id              bigint NOT NULL DEFAULT nextval('ai_embeddings_id_seq'),
    namespace       text NOT NULL CONSTRAINT ai_embeddings_namespace_check CHECK (namespace <> ''),
    content         text NOT NULL,
    content_hash    text NOT NULL,
    source          text,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    provider        text NOT NULL,
    model           text NOT NULL,
    dims            integer NOT NULL CONSTRAINT ai_embeddings_dims_check CHECK (dims > 0),
    embedding       vector NOT NULL,
    fts             tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ai_embeddings_dims_match CHECK (vector_dims(embedding) = dims),
    CONSTRAINT ai_embeddings_pkey PRIMARY KEY (namespace, id),
    CONSTRAINT ai_embeddings_namespace_hash UNIQUE (namespace, content_hash)
) PARTITION BY LIST (namespace);
ALTER SEQUENCE ai_embeddings_id_seq OWNED BY ai_embeddings.id;

-- Partitioned indexes: every partition gets them (existing matching ones are adopted).
-- The HNSW indexes are per partition, built by the pipeline once a new namespace is loaded.
CREATE INDEX ai_embeddings_fts ON ai_embeddings USING gin (fts);
CREATE INDEX ai_embeddings_source ON ai_embeddings (namespace, source);
CREATE INDEX ai_embeddings_root ON ai_embeddings (namespace, ((metadata ->> 'root_id')));

ALTER TABLE ai_embeddings ATTACH PARTITION ai_embeddings_default DEFAULT;

-- "Is any job still loading this namespace?" (the last one builds its vector index).
CREATE INDEX ai_embedding_queue_pending_namespace ON ai_embedding_queue (namespace) WHERE status = 'pending';

-- The dimension trigger now guards the DEFAULT partition only (a namespace's own partition
-- is guarded by its vector index's cast), and every row of a namespace in DEFAULT is in
-- DEFAULT: look there, not through the parent (whose generic plan would lock every
-- partition for each inserted row).
CREATE OR REPLACE FUNCTION ai_embeddings_one_dims_per_namespace() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    other record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('ai_embeddings:' || NEW.namespace));
    SELECT dims, provider, model INTO other
      FROM ai_embeddings_default
     WHERE namespace = NEW.namespace AND id IS DISTINCT FROM NEW.id
     LIMIT 1;
    IF FOUND AND other.dims <> NEW.dims THEN
        RAISE EXCEPTION 'namespace % holds %-dim vectors (%/%); refusing a %-dim vector from %/% '
                        '(use another namespace or re-embed this one)',
                        quote_literal(NEW.namespace), other.dims, other.provider, other.model,
                        NEW.dims, NEW.provider, NEW.model
              USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
