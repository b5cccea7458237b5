"""Stable task names. Beat, routes, the CLI and outside callers use these strings;
module paths never leak into messages, so files can move without breaking callers."""

PING = "tokpulse.ping"
PRUNE_HISTORY = "tokpulse.prune_history"

# Privacy guard jobs (redaction queue), for other services.
REDACT_TEXT = "tokpulse.redact_text"
REDACT_OBJECT = "tokpulse.redact_object"
REDACT_BATCH = "tokpulse.redact_batch"

# Embeddings pipeline and search (embeddings queue).
EMBED_DOCUMENTS = "tokpulse.embed_documents"
REFRESH_EMBEDDINGS = "tokpulse.refresh_embeddings"
SEARCH = "tokpulse.search"
BUILD_VECTOR_INDEX = "tokpulse.build_vector_index"
