"""In-process stand-ins: an in-memory audit sink and a scripted model backend (a verified caller
is ``harness.identity.identity``)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import psycopg

from appliance.audit_bridge.interfaces import AuditEvent, AuditReceipt, RowInsert
from appliance.backends.interfaces import ModelAnswer, ModelIdentity, Prompt, TokenUsage
from harness.fake_vllm import CHAT_TEMPLATE_TOKENS


class RecordingSink:
    """Keeps audit events in memory; can be told to fail. For tests of the core only: the
    PostgreSQL audit sink has its own tests and runs in the end-to-end tests."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.fail = False
        self._lock = threading.Lock()

    def record(
        self, connection: psycopg.Connection[Any], event: AuditEvent, row: RowInsert | None = None
    ) -> AuditReceipt:
        if self.fail:
            raise RuntimeError("audit store refused the event")
        if row is not None:
            connection.execute(row.statement, row.params)
        with self._lock:
            self.events.append(event)
        return AuditReceipt(event_id=str(uuid.uuid4()))

    def record_standalone(self, event: AuditEvent) -> AuditReceipt:
        with self._lock:
            self.events.append(event)
        return AuditReceipt(event_id=str(uuid.uuid4()))


class ScriptedBackend:
    """A model backend without a server: it answers every prompt with ``probabilities`` (by
    answer code), keeps the prompts it was asked, and tokenizes on white space."""

    def __init__(self, probabilities: dict[str, float], name: str = "scripted") -> None:
        self.probabilities = probabilities
        self.prompts: list[Prompt] = []
        self.identity = ModelIdentity(name, "sha256:" + "0" * 64)

    def classify(self, prompt: Prompt) -> ModelAnswer:
        self.prompts.append(prompt)
        known = {code: self.probabilities.get(code, 0.0) for code in prompt.choices}
        total = sum(known.values())
        probabilities = {code: p / total for code, p in known.items()}
        words = len(prompt.instructions.split()) + len(prompt.question.split())
        usage = TokenUsage(words + CHAT_TEMPLATE_TOKENS, 1)
        return ModelAnswer(max(probabilities, key=probabilities.__getitem__), probabilities, usage)

    def tokenize(self, text: str) -> list[int]:
        return [len(word) for word in text.split()]

    def detokenize(self, tokens: list[int]) -> str:
        return " ".join("x" * token for token in tokens)

    def is_healthy(self) -> bool:
        return True

    def close(self) -> None:
        pass
