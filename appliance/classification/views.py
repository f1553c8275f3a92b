"""HTTP views for classification: parse, check roles, call the service, serialise."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Blueprint, current_app, g, request

from appliance.classification.interfaces import Classification, Document, RequestContext
from appliance.classification.schemas import BatchIn, DocumentIn
from appliance.classification.services import ClassificationService
from appliance.errors import ApplianceError, InvalidRequest, NotFound, PayloadTooLarge
from appliance.identity.access import current_identity, requires_roles
from appliance.requests import json_body, validate
from appliance.settings import Settings

bp = Blueprint("classification", __name__, url_prefix="/api/v1")
HISTORY_SOURCES_KEY = "appliance.history_sources"
"""Extensions may list functions ``document_id -> [(timestamp, item)]`` whose items join the
history (human reviews do, see ``appliance.review``)."""
HistorySource = Callable[[str], list[tuple[datetime, dict[str, Any]]]]


def _service() -> ClassificationService:
    service: ClassificationService = current_app.extensions["appliance.classification"]
    return service


def _settings() -> Settings:
    settings: Settings = current_app.extensions["appliance.settings"]
    return settings


def _context() -> RequestContext:
    return RequestContext(
        request_id=g.request_id, identity=current_identity(), source_address=request.remote_addr
    )


def _document(data: Any) -> Document:
    """Validate one document, including the configured text limit (413 past it)."""
    parsed = validate(DocumentIn, data)
    limit = _settings().max_text_bytes
    if len(parsed.text.encode("utf-8")) > limit:
        raise PayloadTooLarge(f"text is larger than {limit} bytes")
    return Document(document_id=parsed.document_id, text=parsed.text, on_behalf_of=parsed.user_id)


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
        "audit_seq": result.audit_seq,
        "timestamp": result.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    if result.audit_seq is None and result.audit_event_id is not None:
        body["audit_event_id"] = result.audit_event_id
    return body


def _item_error(item: Any, error: ApplianceError) -> dict[str, Any]:
    document_id = item.get("document_id") if isinstance(item, dict) else None
    return {
        "document_id": document_id if isinstance(document_id, str) else None,
        "error": {"code": error.code, "message": error.message, "request_id": g.request_id},
    }


@bp.post("/classify-document")
@requires_roles("classifier")
def classify_document() -> dict[str, Any]:
    document = _document(json_body(request, _settings().max_request_bytes))
    g.audit_document_id = document.document_id
    result = _service().classify(document, _context())
    g.audit_recorded = True
    return serialise(result)


@bp.post("/classify-batch")
@requires_roles("classifier")
def classify_batch() -> dict[str, Any]:
    settings = _settings()
    batch = validate(BatchIn, json_body(request, settings.max_batch_request_bytes))
    if len(batch.documents) > settings.max_batch_documents:
        raise InvalidRequest(
            f"got {len(batch.documents)} documents, want at most {settings.max_batch_documents}"
        )
    items: list[Document | ApplianceError] = []
    for raw in batch.documents:
        try:
            items.append(_document(raw))
        except ApplianceError as exc:
            items.append(exc)
    # Each classified item is audited with its result; the batch request itself is audited
    # as a whole by the request hook.
    outcomes = _service().classify_batch(items, _context())
    return {
        "results": [
            _item_error(raw, outcome) if isinstance(outcome, ApplianceError) else serialise(outcome)
            for raw, outcome in zip(batch.documents, outcomes, strict=True)
        ]
    }


@bp.get("/classifications/<path:document_id>")
@requires_roles("reader", "classifier")
def get_classification(document_id: str) -> dict[str, Any]:
    g.audit_document_id = document_id
    history = _service().history(document_id)
    if not history:
        raise NotFound("no classification is stored for this document_id")
    items = [(item.created_at, {"source": "model", **serialise(item)}) for item in history]
    sources: list[HistorySource] = current_app.extensions.get(HISTORY_SOURCES_KEY, [])
    for source in sources:
        items.extend(source(document_id))
    items.sort(key=lambda item: item[0], reverse=True)  # stable: equal times keep their order
    return {**serialise(history[0]), "history": [item for _, item in items]}
