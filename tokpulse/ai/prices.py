"""Cost of a call from the price table in configuration (`ai.prices`, USD per 1M tokens)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from tokpulse.settings import AIPrice

log = logging.getLogger(__name__)
FREE_PROVIDERS = frozenset({"local", "deterministic-analyzer"})
_warned: set[str] = set()


def is_priced(provider: str, model: str, prices: Mapping[str, AIPrice]) -> bool:
    return provider in FREE_PROVIDERS or model in prices


def cost_usd(
    provider: str, model: str, input_tokens: int, output_tokens: int, prices: Mapping[str, AIPrice]
) -> float:
    """Dollars for the tokens; 0 for local providers. A model missing from the table costs 0
    and is logged once per process (add it to `ai.prices` in agent_config.json)."""
    if provider in FREE_PROVIDERS:
        return 0.0
    price = prices.get(model)
    if price is None:
        if model not in _warned:
            _warned.add(model)
            log.warning(
                "ai.prices has no entry for model %s: its calls are recorded at $0 "
                "(add it to agent_config.json)",
                model,
            )
        return 0.0
    return round((input_tokens * price.input + output_tokens * price.output) / 1_000_000, 8)
