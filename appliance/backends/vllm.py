"""The production model backend: vLLM's OpenAI-compatible chat API with constrained decoding.

One call per document: the instructions as the system message (a cached prefix), the document
as the user message, ``structured_outputs`` limiting the answer to the codes, ``max_tokens`` 1,
and the top log-probabilities of that token as the scores (see ``vllm_scoring``).
"""

from __future__ import annotations

import json
from typing import Any

from appliance.backends.interfaces import ModelAnswer, ModelIdentity, Prompt
from appliance.backends.vllm_client import VllmClient, VllmConfig
from appliance.backends.vllm_scoring import answer_from_chat
from appliance.settings import Settings

MAX_TOP_LOGPROBS = 20
"""vLLM returns at most 20 top log-probabilities per token by default."""
DECODING: dict[str, Any] = {"max_tokens": 1, "temperature": 0.0, "logprobs": True}
"""Sampling settings of every request; part of the model's identity (a change re-asks)."""


class VllmBackend:
    """``ModelBackend`` over a ``VllmClient``."""

    def __init__(
        self, client: VllmClient, weights_digest: str | None = None, priority: int = 0
    ) -> None:
        """``priority``: vLLM's scheduling priority of every request (lower first)."""
        self._client = client
        self._priority = priority
        decoding = json.dumps({**DECODING, "structured_outputs": "choice"}, sort_keys=True)
        self._identity = ModelIdentity(client.config.model, weights_digest, decoding)

    @classmethod
    def from_settings(cls, settings: Settings) -> VllmBackend:
        config = VllmConfig(
            base_url=settings.vllm_base_url,
            model=settings.vllm_model,
            api_key=settings.vllm_api_key,
            connect_timeout_s=settings.vllm_connect_timeout_s,
            read_timeout_s=settings.vllm_read_timeout_s,
            max_retries=settings.vllm_max_retries,
            max_connections=settings.vllm_max_concurrency * 2,
            ca_file=settings.vllm_tls_ca,
            cert_file=settings.vllm_tls_cert,
            key_file=settings.vllm_tls_key,
        )
        priority = settings.vllm_request_priority
        return cls(VllmClient(config), settings.model_weights_digest, priority)

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    def classify(self, prompt: Prompt) -> ModelAnswer:
        request = chat_request(prompt, self._priority)
        return answer_from_chat(self._client.chat(request), prompt.choices)

    def tokenize(self, text: str) -> list[int]:
        return self._client.tokenize(text)

    def detokenize(self, tokens: list[int]) -> str:
        return self._client.detokenize(tokens)

    def is_healthy(self) -> bool:
        return self._client.is_healthy()

    def close(self) -> None:
        self._client.close()


def chat_request(prompt: Prompt, priority: int = 0) -> dict[str, Any]:
    """The chat completion request for ``prompt`` (without ``model``, which the client adds).
    A ``priority`` other than 0 is sent only then: vLLM refuses one unless it schedules by
    priority (``--scheduling-policy priority``). It orders requests, it changes no answer."""
    request: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": prompt.instructions},
            {"role": "user", "content": prompt.question},
        ],
        **DECODING,
        "top_logprobs": min(MAX_TOP_LOGPROBS, len(prompt.choices) + 5),
        "structured_outputs": {"choice": list(prompt.choices)},
    }
    if priority:
        request["priority"] = priority
    return request
