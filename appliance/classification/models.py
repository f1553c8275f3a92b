"""Stored classification results. Document text is never stored: only its SHA-256 and length."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from appliance.db import Base


class ClassificationResult(Base):
    """One classification of one document; never updated (the database refuses it to the
    application's role), a new row per classification."""

    __tablename__ = "classification_results"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    document_id: Mapped[str] = mapped_column(String(256))
    content_sha256: Mapped[str] = mapped_column(String(64))
    """SHA-256 (hex) of the normalised text: the dedupe key with the labeller's fingerprint and
    the taxonomy version."""
    content_length: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(256))
    taxonomy_version: Mapped[str] = mapped_column(String(80))
    model_digest: Mapped[str | None] = mapped_column(String(80))
    """The weights' digest of the model that answered, when known (also in the audit event)."""
    prompt_version: Mapped[str | None] = mapped_column(String(64))
    """``Labeller.prompt_version``: the prompt template, decoding settings and token budget
    (None: stored before it was recorded)."""
    labeller_fingerprint: Mapped[str | None] = mapped_column(String(64))
    """``Labeller.fingerprint`` of the model call that produced the label (None: stored before
    fingerprints, never reused)."""
    label: Mapped[str] = mapped_column(String(128))
    confidence: Mapped[float] = mapped_column(Float)
    scores: Mapped[dict[str, float]] = mapped_column(JSONB)
    needs_review: Mapped[bool] = mapped_column(Boolean)
    truncated: Mapped[bool] = mapped_column(Boolean)
    cached_from: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("classification_results.id")
    )
    """Set when the label was reused from an earlier result for the same content."""
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    """Set for a classified file (``classify-file``), with the columns below; None for text."""
    file_size: Mapped[int | None] = mapped_column(BigInteger)
    file_media_type: Mapped[str | None] = mapped_column(String(128))
    page_count: Mapped[int | None] = mapped_column(Integer)
    file_mode: Mapped[str | None] = mapped_column(String(16))
    intake_fingerprint: Mapped[str | None] = mapped_column(String(64))
    """What the pages were read with (mode, pages read, OCR language and DPI, Tesseract)."""
    pages: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    """Per page: number, text source, SHA-256 of its text, whether it was blank."""
    segments: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    """Consecutive page ranges, each with label, confidence and scores."""
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    """Tokens the model server counted for this result's model calls (0 for a result reused
    from an earlier one; None: stored before tokens were counted, or the server did not say)."""
    cost: Mapped[float | None] = mapped_column(Float)
    """Those tokens' cost at the configured price (``APPLIANCE_MODEL_COSTS``); None without one."""
    stage: Mapped[str | None] = mapped_column(String(64))
    """The cascade stage that answered (``appliance.cascade``); None without a cascade."""
    stages: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    """Each cascade stage asked, in order: its name and confidence (the last one answered)."""
    requested_by: Mapped[str | None] = mapped_column(String(512))
    on_behalf_of: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        Index("ix_classification_results_document_id_created_at", "document_id", "created_at"),
        Index(
            "ix_classification_results_file_key",
            "file_sha256",
            "intake_fingerprint",
            "labeller_fingerprint",
            "taxonomy_version",
        ),
        Index(
            "ix_classification_results_review_queue",
            "created_at",
            "id",
            postgresql_where=text("needs_review"),
        ),
        Index(
            "ix_classification_results_content_key",
            "content_sha256",
            "labeller_fingerprint",
            "taxonomy_version",
        ),
    )
