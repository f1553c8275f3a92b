"""Review request and response bodies (the same pydantic models can feed the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from appliance.classification.schemas import ClassificationOut
from appliance.classification.taxonomy import LABEL_PATTERN
from appliance.review.models import MAX_NOTE_CHARS
from appliance.review.services import Review
from appliance.text import Storable


class ReviewIn(BaseModel):
    """A reviewer's decision. The reviewer is the verified caller, never a body field."""

    model_config = ConfigDict(extra="forbid", strict=True)

    label: str = Field(pattern=LABEL_PATTERN, examples=["TEST_RESULTS"])
    note: Storable | None = Field(default=None, max_length=MAX_NOTE_CHARS)


class ReviewOut(BaseModel):
    source: Literal["review"] = "review"
    review_id: str
    result_id: str
    document_id: str
    classification: str
    model_classification: str
    taxonomy_version: str
    reviewer: str
    note: str | None
    audit_event_id: str | None = Field(
        default=None,
        description="The audit event recorded with this review; null on reviews read back.",
    )
    timestamp: datetime


class ModelResultOut(ClassificationOut):
    source: Literal["model"] = "model"


class HistoryOut(ClassificationOut):
    """A document's newest result, and its history: the model's results and the human reviews,
    newest first, told apart by ``source``."""

    history: list[Annotated[ModelResultOut | ReviewOut, Field(discriminator="source")]]


class QueueOut(BaseModel):
    results: list[ClassificationOut]
    next_after: str | None
    """Pass as ``after`` for the next page; null on the last page."""


def serialise_review(review: Review) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": "review",
        "review_id": str(review.review_id),
        "result_id": str(review.result_id),
        "document_id": review.document_id,
        "classification": review.label,
        "model_classification": review.model_label,
        "taxonomy_version": review.taxonomy_version,
        "reviewer": review.reviewer,
        "note": review.note,
        "audit_event_id": review.audit_event_id,
        "timestamp": review.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    return body
