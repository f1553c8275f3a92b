"""Tokens and cost of model calls: stored with each result and counted in metrics per model.

The counts are the model server's own (``usage`` in vLLM's answer); the cost is the configured
price of that model (``APPLIANCE_MODEL_COSTS``) at the time of the call, so a later price change
does not rewrite what a result cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from appliance import metrics
from appliance.backends.interfaces import TokenUsage
from appliance.settings import ModelPrice


@dataclass(frozen=True)
class Metered:
    """What a result records of its model calls; None where nothing is known."""

    prompt_tokens: int | None
    completion_tokens: int | None
    cost: float | None

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens


REUSED = Metered(0, 0, 0.0)
"""A result answered from a stored one: no model call, nothing spent."""


class Meter:
    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._prices = dict(prices)

    def measure(self, model: str, usage: TokenUsage | None) -> Metered:
        """``usage`` of a call to ``model`` as a result records it, counted in the metrics."""
        if usage is None:
            return Metered(None, None, None)
        metrics.MODEL_TOKENS.labels(model, "prompt").inc(usage.prompt_tokens)
        metrics.MODEL_TOKENS.labels(model, "completion").inc(usage.completion_tokens)
        price = self._prices.get(model)
        if price is None:
            return Metered(usage.prompt_tokens, usage.completion_tokens, None)
        cost = price.cost(usage.prompt_tokens, usage.completion_tokens)
        metrics.MODEL_COST.labels(model).inc(cost)
        return Metered(usage.prompt_tokens, usage.completion_tokens, cost)
