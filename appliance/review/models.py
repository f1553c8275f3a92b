"""Human reviews of classification results. A review is added, never updated: the model's result
stays as it was, and the review joins the document's history next to it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, String, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from appliance.db import Base

MAX_NOTE_CHARS = 2000


class ClassificationReview(Base):
    """One reviewer's label for one classification result."""

    __tablename__ = "classification_reviews"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    result_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("classification_results.id")
    )
    """The reviewed ``classification_results.id``."""
    document_id: Mapped[str] = mapped_column(String(256))
    """Copied from the result so a document's history is one indexed lookup."""
    label: Mapped[str] = mapped_column(String(128))
    """The reviewer's label, one of the labels of ``taxonomy_version``."""
    taxonomy_version: Mapped[str] = mapped_column(String(80))
    """The taxonomy the reviewer chose from (the one loaded when the review was made)."""
    reviewer: Mapped[str] = mapped_column(String(512))
    """The verified identity that made the review (certificate name), never a body field."""
    note: Mapped[str | None] = mapped_column(String(MAX_NOTE_CHARS))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        Index("ix_classification_reviews_result_id", "result_id"),
        Index("ix_classification_reviews_document_id_created_at", "document_id", "created_at"),
    )
