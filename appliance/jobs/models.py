"""Bulk jobs and their items. Item texts are stored only encrypted, only until the item is done."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from appliance.db import Base

ITEM_STATES = ("pending", "done", "failed", "cancelled")


class BulkJob(Base):
    """A submitted job. Its state follows from its items and its timestamps (``JobState``)."""

    __tablename__ = "bulk_jobs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    owner: Mapped[str] = mapped_column(String(512))
    """The submitting identity's name: only it (and auditors) may see the job."""
    owner_fingerprint: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(256))
    request_sha256: Mapped[str] = mapped_column(String(64))
    """The submitted body's digest: a repeated key with another body is refused."""
    total_items: Mapped[int] = mapped_column(Integer)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    """The job's data key, encrypted with the key-encryption key file (``jobs/crypto.py``)."""
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key"),
        CheckConstraint("total_items > 0", name="total"),
    )


class JobItem(Base):
    """One JSON Lines item of a job: pending with its encrypted text, then done with its result,
    failed with its error, or cancelled."""

    __tablename__ = "job_items"

    job_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("bulk_jobs.id"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    """The item's line number in the submitted body, from 1."""
    document_id: Mapped[str | None] = mapped_column(String(256))
    on_behalf_of: Mapped[str | None] = mapped_column(String(256))
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16), server_default="pending")
    result_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("classification_results.id")
    )
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(1024))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_job_items_job_id_state", "job_id", "state"),
        CheckConstraint("state IN ('pending', 'done', 'failed', 'cancelled')", name="state"),
        CheckConstraint("state = 'pending' OR ciphertext IS NULL", name="text_until_done"),
    )
