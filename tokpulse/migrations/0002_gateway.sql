-- AI gateway (tokpulse.ai): ledger detail, the per-model embedding cache, and the
-- one-dimension-per-namespace rule for the vector store.

-- Ledger detail. input/output_tokens stay what the provider billed; a cache hit bills
-- nothing and records what it saved in cached_tokens.
ALTER TABLE ai_usage_metrics
    ADD COLUMN inputs           integer NOT NULL DEFAULT 1 CHECK (inputs >= 0),   -- texts or messages
    ADD COLUMN cached_tokens    integer NOT NULL DEFAULT 0 CHECK (cached_tokens >= 0),
    ADD COLUMN requested_tokens integer CHECK (requested_tokens >= 0),           -- limiter estimate
    ADD COLUMN attempt          integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    ADD COLUMN essential        boolean;
CREATE INDEX ai_usage_metrics_task_time ON ai_usage_metrics (task_name, created_at);

-- Embedding cache: one vector per (provider, model, redacted text). Only a hash of the
-- (already redacted) text is kept, never the text. Vectors are little-endian float32.
CREATE TABLE ai_embedding_cache (
    provider    text NOT NULL,
    model       text NOT NULL,
    text_hash   bytea NOT NULL CHECK (octet_length(text_hash) = 32),           -- sha256
    dims        integer NOT NULL CHECK (dims > 0),
    tokens      integer NOT NULL CHECK (tokens >= 0),
    vector      bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, model, text_hash),
    CONSTRAINT ai_embedding_cache_vector_size CHECK (octet_length(vector) = 4 * dims)
);

-- One dimension per namespace: vectors of different sizes cannot be compared, so a
-- namespace holding 1536-dim vectors refuses a 384-dim one, whoever writes it. The
-- advisory lock serialises the first writers of an empty namespace. Because the rule
-- itself keeps every row of a namespace at one dimension, looking at any one other row
-- is enough (one index probe); searching for a row with `dims <> NEW.dims` instead would
-- scan the whole namespace per inserted row and make bulk loads quadratic.
CREATE INDEX ai_embeddings_namespace_dims ON ai_embeddings (namespace, dims);

CREATE FUNCTION ai_embeddings_one_dims_per_namespace() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    other record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('ai_embeddings:' || NEW.namespace));
    SELECT dims, provider, model INTO other
      FROM ai_embeddings
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

CREATE TRIGGER ai_embeddings_one_dims_per_namespace
    BEFORE INSERT OR UPDATE OF namespace, dims ON ai_embeddings
    FOR EACH ROW EXECUTE FUNCTION ai_embeddings_one_dims_per_namespace();
