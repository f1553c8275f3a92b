"""What callers of the classification service hand in and get back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime


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
    label: str
    confidence: float
    scores: dict[str, float]
    needs_review: bool
    model: str
    taxonomy_version: str
    truncated: bool
    cached: bool
    created_at: datetime
    audit_event_id: str | None = None
    """The audit event recorded with this answer; None for results read back from storage."""
