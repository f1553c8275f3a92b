"""What callers of the classification service hand in and get back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from appliance.classification.labeller import StageAnswer


@dataclass(frozen=True)
class Document:
    document_id: str
    text: str
    on_behalf_of: str | None = None


@dataclass(frozen=True)
class Classification:
    """A stored classification as the API returns it."""

    result_id: uuid.UUID
    document_id: str
    created_at: datetime
    # What was decided
    label: str
    confidence: float
    scores: dict[str, float]
    needs_review: bool
    # How: with which model and taxonomy, from an earlier result, on how much of the text
    model: str
    taxonomy_version: str
    cached: bool
    truncated: bool
    audit_event_id: str | None = None
    """The audit event recorded with this answer; None for results read back from storage."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None
    """What this answer's model calls consumed (0 when reused; None when not known)."""
    stages: tuple[StageAnswer, ...] = ()
    """A cascade's stages asked, in order; the last one answered (empty: no cascade)."""
