"""What turns text into vectors for the pipeline and search: the AI gateway.

`GatewayEmbedder` is the only embedder the product uses: every call goes through
`tokpulse.ai` (privacy guard, fleet-wide rate limits, batching to provider limits, the
per-model cache, the usage ledger). The `Embedder` protocol exists so benchmarks can put a
fixed fast embedder in the same place; nothing else in the project needs it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tokpulse.settings import Settings


@dataclass
class EmbedBatch:
    vectors: list[np.ndarray | None]  # input order; None where `errors` has the index
    errors: dict[int, str]
    provider: str
    model: str
    dims: int
    cost_usd: float  # what the ledger recorded for these calls
    input_tokens: int


class Embedder(Protocol):
    target: str  # "provider/model": which staged chunks this embedder may drain

    def embed(self, texts: Sequence[str]) -> EmbedBatch: ...

    def estimate_cost(self, tokens: int) -> float: ...


def gateway_target(settings: Settings) -> tuple[str, str]:
    """(provider, model) the gateway will embed with, known without building it: OpenAI's
    configured model with a key, else the local model."""
    if settings.openai_api_key:
        return "openai", settings.agent.models.embeddings
    from tokpulse.ai.providers import LOCAL_MODEL

    return "local", LOCAL_MODEL


class GatewayEmbedder:
    """Embeds through `tokpulse.ai.get_gateway()` under `caller` (the ledger's task name)."""

    def __init__(self, settings: Settings | None = None, *, caller: str, max_wait: float | None = None,
                 gateway=None):
        if settings is None:
            from tokpulse.settings import load_settings

            settings = load_settings()
        self.settings = settings
        self.caller = caller
        self.max_wait = max_wait
        self._gateway = gateway
        provider, model = gateway_target(settings)
        self.provider, self.model = provider, model
        self.target = f"{provider}/{model}"

    @property
    def gateway(self):
        if self._gateway is None:
            from tokpulse.ai import get_gateway

            self._gateway = get_gateway(None)
        return self._gateway

    def embed(self, texts: Sequence[str], *, namespace: str | None = None) -> EmbedBatch:
        res = self.gateway.embed(list(texts), caller=self.caller, namespace=namespace, essential=True,
                                 max_wait=self.max_wait)
        return EmbedBatch(list(res.vectors), dict(res.errors), res.provider, res.model, int(res.dims),
                          float(res.cost_usd), int(res.input_tokens))

    def estimate_cost(self, tokens: int) -> float:
        from tokpulse.ai.prices import cost_usd

        return cost_usd(self.provider, self.model, int(tokens), 0, self.settings.agent.ai.prices)
