"""Packing embedding inputs into as few requests as the provider's limits allow.

Limits per request (OpenAI): 2,048 inputs and 300,000 tokens, 8,192 tokens per input; and
never more tokens than the model's per-minute budget (such a request could never be
admitted). Two caps make this a two-dimensional packing: first-fit decreasing alone fills
early requests with long inputs (token-bound) and late ones with short inputs
(count-bound). So balanced packings into k = lower bound, lower bound + 1, ... requests are
tried first (largest input into the emptiest request), and first-fit decreasing is the
fallback. The result stays at, or within a few percent of, the lower bound
max(ceil(n/2048), ceil(tokens/300k))."""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchLimits:
    max_inputs: int = 2048
    max_request_tokens: int = 300_000
    max_input_tokens: int = 8192


@dataclass
class Packing:
    batches: list[list[int]]  # indices into the input, each batch in ascending order
    oversize: dict[int, str]  # index -> error, inputs that can never be sent


def lower_bound(token_counts: Sequence[int], limits: BatchLimits) -> int:
    """The fewest requests any packing needs."""
    if not token_counts:
        return 0
    return max(
        math.ceil(len(token_counts) / limits.max_inputs),
        math.ceil(sum(token_counts) / limits.max_request_tokens),
    )


def pack(token_counts: Sequence[int], limits: BatchLimits) -> Packing:
    """Assign every input that fits to a batch; report the others as per-input errors."""
    oversize: dict[int, str] = {}
    per_input = min(limits.max_input_tokens, limits.max_request_tokens)
    items: list[tuple[int, int]] = []
    for i, n in enumerate(token_counts):
        if n <= 0:
            oversize[i] = "empty input: nothing to embed"
        elif n > per_input:
            why = (
                f"the model's limit of {limits.max_input_tokens} tokens per input"
                if per_input == limits.max_input_tokens
                else f"the {per_input} tokens one request may carry under the per-minute budget"
            )
            oversize[i] = f"input has {n} tokens, over {why}; split it into smaller chunks"
        else:
            items.append((n, i))
    items.sort(key=lambda x: (-x[0], x[1]))
    ffd = _first_fit_decreasing(items, limits)
    if items:
        k = lower_bound([n for n, _ in items], limits)
        while k < len(ffd):
            balanced = _balanced(items, k, limits)
            if balanced is not None:
                return Packing(balanced, oversize)
            k += 1
    return Packing(ffd, oversize)


def _balanced(items: list[tuple[int, int]], k: int, limits: BatchLimits) -> list[list[int]] | None:
    """Largest input first into the request with the most free tokens; None if it fails."""
    heap = [(-limits.max_request_tokens, b) for b in range(k)]
    slots = [limits.max_inputs] * k
    out: list[list[int]] = [[] for _ in range(k)]
    for n, i in items:
        if not heap:
            return None
        neg_free, b = heapq.heappop(heap)
        if -neg_free < n:
            return None
        out[b].append(i)
        slots[b] -= 1
        if slots[b] > 0:
            heapq.heappush(heap, (neg_free + n, b))
    return [sorted(b) for b in out if b]


def _first_fit_decreasing(items: list[tuple[int, int]], limits: BatchLimits) -> list[list[int]]:
    # Bins: [free tokens, free slots, indices]. Inputs arrive largest first, so the bins
    # are almost all full before small inputs fill the gaps.
    bins: list[list] = []
    open_bins: list[list] = []  # bins that can still take the smallest input
    smallest = items[-1][0] if items else 0
    for n, i in items:
        for b in open_bins:
            if b[0] >= n and b[1] > 0:
                b[0] -= n
                b[1] -= 1
                b[2].append(i)
                if b[1] == 0 or b[0] < smallest:
                    open_bins.remove(b)
                break
        else:
            b = [limits.max_request_tokens - n, limits.max_inputs - 1, [i]]
            bins.append(b)
            if b[1] > 0 and b[0] >= smallest:
                open_bins.append(b)
    return [sorted(b[2]) for b in bins]
