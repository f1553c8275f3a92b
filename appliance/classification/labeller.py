"""Asking the model for a label: prompt, token budget, one constrained call, scores by label."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Protocol

from appliance.backends.interfaces import (
    ModelAnswer,
    ModelBackend,
    ModelIdentity,
    Prompt,
    TokenUsage,
)
from appliance.classification.prompts import question, system_prompt
from appliance.classification.taxonomy import Taxonomy
from appliance.errors import UpstreamInvalidResponse

WARM_UP_DOCUMENT = "Appointment reminder for next Tuesday at 10:30."
CHAT_TEMPLATE_ALLOWANCE = 64
"""Tokens a server's chat template may add around the messages (role markers, system tags):
part of the upper bound a quota reserves before the call."""


@dataclass(frozen=True)
class Scored:
    label: str
    confidence: float
    scores: dict[str, float]


@dataclass(frozen=True)
class StageAnswer:
    """One stage of a cascade asked about a document, and the confidence it answered with."""

    stage: str
    confidence: float


@dataclass(frozen=True)
class Labelled:
    scored: Scored
    truncated: bool
    usage: TokenUsage | None = None
    """The model call's tokens, when the server counted them."""
    model: ModelIdentity | None = None
    """The model that answered, when not the labeller's own ``model`` (a cascade's stage)."""
    stages: tuple[StageAnswer, ...] = ()
    """A cascade's stages asked, in order (the last one answered); empty without a cascade."""


class DocumentLabeller(Protocol):
    """What classification asks for labels: one model (``Labeller``) or a cascade of stages
    (``appliance.cascade``)."""

    @property
    def model(self) -> ModelIdentity:
        """The model a result records unless ``Labelled.model`` names another."""

    @property
    def fingerprint(self) -> str:
        """Everything but the text that shapes an answer: the dedupe cache reuses a stored
        result only under the same fingerprint."""

    @property
    def prompt_version(self) -> str:
        """How the models are asked (the audit log records it with each decision)."""

    def label(self, text: str) -> Labelled: ...

    def token_estimate(self, text: str) -> int:
        """An upper bound on the model server tokens labelling ``text`` consumes."""

    def warm_up(self) -> None:
        """Fail now, not on the first caller, if a model cannot answer."""


def scored(answer: ModelAnswer, code_to_label: dict[str, str]) -> Scored:
    """The answer in the taxonomy's terms: the label answered and a score per label."""
    scores = {code_to_label[code]: p for code, p in answer.probabilities.items()}
    label = code_to_label[answer.choice]
    return Scored(label=label, confidence=scores[label], scores=scores)


class Labeller:
    """Turns document text into scores over the taxonomy with one constrained model call."""

    def __init__(self, backend: ModelBackend, taxonomy: Taxonomy, max_document_tokens: int) -> None:
        self._backend = backend
        self._codes = taxonomy.code_to_label
        self._system = system_prompt(taxonomy)
        self._max_document_tokens = max_document_tokens
        self.fingerprint = _digest(self._shape(model=asdict(self.model)))
        self.prompt_version = _digest(self._shape(decoding=self.model.decoding))
        self._template_tokens: int | None = None
        """SHA-256 (hex) of the prompt template, the decoding settings and the token budget:
        what the audit log records of how the model was asked, next to the model's identity."""

    @property
    def model(self) -> ModelIdentity:
        return self._backend.identity

    def _shape(self, **extra: object) -> dict[str, object]:
        """Everything besides the text that shapes an answer: the prompt around the document
        and the token budget, with ``extra``. ``fingerprint`` adds the model (its weights and
        decoding settings): a stored result is reused only under the same fingerprint, so a new
        prompt, new decoding settings or swapped weights under the same served name ask the
        model again."""
        template = self.prompt("\x00document\x00")
        return {
            "instructions": template.instructions,
            "question": template.question,
            "choices": template.choices,
            "max_document_tokens": self._max_document_tokens,
            **extra,
        }

    def label(self, text: str) -> Labelled:
        document, truncated = self.fit_to_budget(text)
        answer = self._backend.classify(self.prompt(document))
        return Labelled(scored(answer, self._codes), truncated, answer.usage)

    def token_estimate(self, text: str) -> int:
        """An upper bound on the tokens one call for ``text`` consumes, without calling the
        model: the document part is at most its length in bytes and at most the budget (a
        byte-level token spans at least one byte), the prompt around it is counted once, and
        the answer is one token."""
        if self._template_tokens is None:
            template = self.prompt("")
            counted = self._backend.tokenize(template.instructions + "\n" + template.question)
            self._template_tokens = len(counted) + CHAT_TEMPLATE_ALLOWANCE
        document = min(len(text.encode("utf-8")), self._max_document_tokens)
        return self._template_tokens + document + 1

    def prompt(self, document: str) -> Prompt:
        return Prompt(self._system, question(document), tuple(self._codes))

    def fit_to_budget(self, text: str) -> tuple[str, bool]:
        """Cut ``text`` to the token budget. A byte-level token spans at least one byte, so text
        no longer in bytes than the budget cannot exceed it and skips the tokenizer call."""
        if len(text.encode("utf-8")) <= self._max_document_tokens:
            return text, False
        tokens = self._backend.tokenize(text)
        if len(tokens) <= self._max_document_tokens:
            return text, False
        return self._backend.detokenize(tokens[: self._max_document_tokens]), True

    def warm_up(self) -> None:
        """Check each code is one token for this model, then classify once so the server
        compiles the answer grammar before the first real caller arrives."""
        for code in self._codes:
            if len(self._backend.tokenize(code)) != 1:
                raise UpstreamInvalidResponse(
                    f"answer code {code!r} is not a single token for model {self.model.served_name}"
                )
        self.label(WARM_UP_DOCUMENT)


def _digest(shape: dict[str, object]) -> str:
    canonical = json.dumps(shape, sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
