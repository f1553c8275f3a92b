"""Asking the model for a label: prompt, token budget, constrained decoding, scoring."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.classification.prompts import chat_messages, system_prompt
from appliance.classification.scoring import Scored, score_chat_answer
from appliance.classification.taxonomy import Taxonomy
from appliance.errors import UpstreamInvalidResponse
from appliance.vllm.client import VllmClient

WARM_UP_DOCUMENT = "Appointment reminder for next Tuesday at 10:30."
MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class Labelled:
    scored: Scored
    truncated: bool


class Labeller:
    """Turns document text into scores over the taxonomy with one constrained model call."""

    def __init__(self, client: VllmClient, taxonomy: Taxonomy, max_document_tokens: int) -> None:
        self._client = client
        self._codes = taxonomy.code_to_label
        self._system = system_prompt(taxonomy)
        self._max_document_tokens = max_document_tokens

    @property
    def model(self) -> str:
        return self._client.config.model

    def label(self, text: str) -> Labelled:
        document, truncated = self.fit_to_budget(text)
        body = self._client.chat(self.chat_request(document))
        return Labelled(scored=score_chat_answer(body, self._codes), truncated=truncated)

    def fit_to_budget(self, text: str) -> tuple[str, bool]:
        """Cut ``text`` to the token budget. A byte-level token spans at least one byte, so text
        no longer in bytes than the budget cannot exceed it and skips the tokenizer call."""
        if len(text.encode("utf-8")) <= self._max_document_tokens:
            return text, False
        tokens = self._client.tokenize(text)
        if len(tokens) <= self._max_document_tokens:
            return text, False
        return self._client.detokenize(tokens[: self._max_document_tokens]), True

    def warm_up(self) -> None:
        """Check each code is one token for this model, then classify once so vLLM compiles the
        answer grammar before the first real caller arrives."""
        for code in self._codes:
            if len(self._client.tokenize(code)) != 1:
                raise UpstreamInvalidResponse(
                    f"answer code {code!r} is not a single token for model {self.model}"
                )
        self.label(WARM_UP_DOCUMENT)

    def chat_request(self, document: str) -> dict[str, Any]:
        return {
            "messages": chat_messages(self._system, document),
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": True,
            "top_logprobs": min(MAX_TOP_LOGPROBS, len(self._codes) + 5),
            "structured_outputs": {"choice": list(self._codes)},
        }
