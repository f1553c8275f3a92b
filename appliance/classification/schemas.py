"""Request and response bodies. The same pydantic models validate requests and generate OpenAPI;
``serialise`` writes a result in the shape ``ClassificationOut`` documents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from appliance.classification.interfaces import Classification, Document
from appliance.errors import PayloadTooLarge
from appliance.text import Encodable, Identifier, Storable
from appliance.validation import validate


class DocumentIn(BaseModel):
    """One document to classify. Unknown fields are rejected, never silently dropped."""

    model_config = ConfigDict(extra="forbid", strict=True)

    document_id: Identifier = Field(min_length=1, max_length=256, examples=["MRN-00017/visit-3"])
    text: Encodable = Field(
        pattern=r"\S",
        description="The document's text (not only white space); at most the configured limit"
        " of bytes.",
    )
    metadata: dict[str, Any] | None = Field(
        default=None, description="Caller's context; not stored (it may hold PHI)."
    )
    user_id: Storable | None = Field(
        default=None,
        max_length=256,
        description="Recorded as on_behalf_of; never trusted as identity.",
    )


def parse_document(data: Any, max_text_bytes: int) -> Document:
    """Validate one document, including the configured text limit (413 past it): the same rule
    for a single call, a batch's item and a bulk job's line."""
    parsed = validate(DocumentIn, data)
    if len(parsed.text.encode("utf-8")) > max_text_bytes:
        raise PayloadTooLarge(f"text is larger than {max_text_bytes} bytes")
    return Document(document_id=parsed.document_id, text=parsed.text, on_behalf_of=parsed.user_id)


class BatchIn(BaseModel):
    """Several documents; each is validated on its own so one bad item does not fail the others."""

    model_config = ConfigDict(extra="forbid", strict=True)

    documents: list[Any] = Field(min_length=1)
    """Items stay untyped here so each is validated alone; OpenAPI documents them as DocumentIn."""


class TokenUsageOut(BaseModel):
    prompt_tokens: int | None = Field(description="Prompt tokens the model server counted "
                                      "(0 for an answer reused from a stored result; null when "
                                      "not known)")  # fmt: skip
    completion_tokens: int | None
    cost: float | None = Field(description="Their cost at the configured price of the model "
                               "(APPLIANCE_MODEL_COSTS); null without one")  # fmt: skip


class StageOut(BaseModel):
    stage: str
    confidence: float


class ClassificationOut(BaseModel):
    document_id: str
    classification: str
    confidence: float
    scores: dict[str, float]
    needs_review: bool
    model: str
    taxonomy_version: str
    truncated: bool
    cached: bool
    result_id: str
    audit_event_id: str | None = Field(
        default=None,
        description="The audit event recorded with this answer (sealed into the log shortly "
        "after); null on results read back from storage.",
    )
    timestamp: datetime
    usage: TokenUsageOut
    stages: list[StageOut] | None = Field(
        default=None,
        description="With a cascade of models: each stage asked, in order, with its confidence;"
        " the last one answered (its model is `model`). Null: one model answered.",
    )


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


class BatchItemError(BaseModel):
    document_id: str | None
    error: ErrorBody


class BatchOut(BaseModel):
    results: list[ClassificationOut | BatchItemError]


def serialise(result: Classification) -> dict[str, Any]:
    body: dict[str, Any] = {
        "document_id": result.document_id,
        "classification": result.label,
        "confidence": result.confidence,
        "scores": result.scores,
        "needs_review": result.needs_review,
        "model": result.model,
        "taxonomy_version": result.taxonomy_version,
        "truncated": result.truncated,
        "cached": result.cached,
        "result_id": str(result.result_id),
        "audit_event_id": result.audit_event_id,
        "timestamp": result.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "usage": {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "cost": result.cost,
        },
        "stages": [{"stage": a.stage, "confidence": a.confidence} for a in result.stages]
        if result.stages
        else None,
    }
    return body
