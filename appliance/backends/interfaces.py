"""What the classification service needs from a model, whatever serves it.

A backend answers one prepared question (instructions, the document, the allowed answer codes)
with a probability for each code, and can count and cut tokens for the document budget. vLLM is
the production backend (``appliance.backends.vllm``); a cascade stage or a scripted test
backend implements the same protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ModelIdentity:
    """Which model answered: stable across restarts, different when the weights change."""

    served_name: str
    weights_digest: str | None = None
    """A digest of the weights (``sha256:<hex>``) when the server exposes one or the operator
    configured it; None when unknown."""
    decoding: str = ""
    """The backend's decoding settings that shape an answer (temperature, constraints), as
    canonical text: a result is reused only under the same settings."""


@dataclass(frozen=True)
class Prompt:
    """One classification question. ``instructions`` are byte-identical on every call (the
    server's prefix cache reuses them); only ``question`` carries the document."""

    instructions: str
    question: str
    choices: tuple[str, ...]
    """The answer codes the model may give, one token each."""


@dataclass(frozen=True)
class TokenUsage:
    """Tokens a model call consumed, as the model server counted them."""

    prompt_tokens: int
    completion_tokens: int

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


def combined(usages: list[TokenUsage | None]) -> TokenUsage | None:
    """The sum of several calls' usage; None if any call's was not counted."""
    total = TokenUsage(0, 0)
    for usage in usages:
        if usage is None:
            return None
        total += usage
    return total


@dataclass(frozen=True)
class ModelAnswer:
    choice: str
    """The code the model answered; one of the prompt's choices."""
    probabilities: Mapping[str, float]
    """A probability per choice, summing to 1."""
    usage: TokenUsage | None = None
    """What the call consumed; None when the server did not say."""


class ModelBackend(Protocol):
    """Thread-safe: one per worker process, shared by its threads. Failures raise the
    appliance's upstream errors (``UpstreamUnavailable``, ``UpstreamTimeout``,
    ``UpstreamInvalidResponse``)."""

    @property
    def identity(self) -> ModelIdentity: ...

    def classify(self, prompt: Prompt) -> ModelAnswer:
        """The model's answer to ``prompt``, constrained to its choices."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` under the model's tokenizer, without special tokens."""
        ...

    def detokenize(self, tokens: list[int]) -> str: ...

    def is_healthy(self) -> bool:
        """One quick check without retries, for readiness probes."""
        ...

    def close(self) -> None: ...
