"""HTTP views for classification: parse, check roles, call the service, serialise."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, request

from appliance.audit_bridge.declare import audited
from appliance.audit_bridge.interfaces import Action
from appliance.classification.file_schemas import FileParams, serialise_file
from appliance.classification.files import IncomingFile
from appliance.classification.interfaces import Document
from appliance.classification.schemas import BatchIn, parse_document, serialise
from appliance.errors import ApplianceError, InvalidRequest, NotFound
from appliance.identity.access import requires_roles
from appliance.intake.formats import kind_of
from appliance.requests import (
    body_bytes,
    json_body,
    storable_parameter,
    uploaded_file,
)
from appliance.review.schemas import serialise_review
from appliance.validation import validate
from appliance.web import current_services, request_context

bp = Blueprint("classification", __name__, url_prefix="/api/v1")


def _document(data: Any) -> Document:
    return parse_document(data, current_services().settings.max_text_bytes)


def _item_error(item: Any, error: ApplianceError) -> dict[str, Any]:
    document_id = item.get("document_id") if isinstance(item, dict) else None
    return {
        "document_id": document_id if isinstance(document_id, str) else None,
        **error.body(request_context().request_id),
    }


@bp.post("/classify-document")
@audited(Action.CLASSIFY_DOCUMENT)
@requires_roles("classifier")
def classify_document() -> dict[str, Any]:
    services = current_services()
    document = _document(json_body(request, services.settings.max_request_bytes))
    return serialise(services.classification.classify(document, request_context()))


@bp.post("/classify-batch")
@audited(Action.CLASSIFY_BATCH)
@requires_roles("classifier")
def classify_batch() -> dict[str, Any]:
    services = current_services()
    settings = services.settings
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
    outcomes = services.classification.classify_batch(items, request_context())
    return {
        "results": [
            _item_error(raw, outcome) if isinstance(outcome, ApplianceError) else serialise(outcome)
            for raw, outcome in zip(batch.documents, outcomes, strict=True)
        ]
    }


@bp.post("/classify-file")
@audited(Action.CLASSIFY_FILE)
@requires_roles("classifier")
def classify_file() -> dict[str, Any]:
    """The file is the body, with its media type, and the document id and mode are query
    parameters; or a multipart form with the file as its part ``file`` and the parameters as
    fields or in the query."""
    services = current_services()
    max_bytes = services.settings.file_max_bytes
    fields: dict[str, str] = {}
    if request.mimetype == "multipart/form-data":
        data, media_type, fields = uploaded_file(request, max_bytes)
    else:
        data, media_type = body_bytes(request, max_bytes), request.content_type or ""
    params = validate(FileParams, {**request.args.to_dict(), **fields})
    incoming = IncomingFile(params.document_id, data, kind_of(data, media_type), params.user_id)
    return serialise_file(services.files.classify(incoming, params.mode, request_context()))


@bp.get("/classifications/<uuid:result_id>/receipt")
@audited(Action.READ_RECEIPT)
@requires_roles("reader", "classifier", "auditor")
def get_receipt(result_id: uuid.UUID) -> Response:
    """The offline-verifiable receipt of the classification's audit event (C2SP tlog-proof;
    ``audit-tool verify-receipt``); 409 with Retry-After until the event is signed."""
    text = current_services().audit_reader.receipt(result_id)
    return Response(text, content_type="text/plain; charset=utf-8")


@bp.get("/classifications/<path:document_id>")
@audited(Action.READ_CLASSIFICATION)
@requires_roles("reader", "classifier")
def get_classification(document_id: str) -> dict[str, Any]:
    """The newest result, and the document's history: results and human reviews."""
    services = current_services()
    document_id = storable_parameter("document_id", document_id)
    history = services.classification.history(document_id)
    if not history:
        raise NotFound("no classification is stored for this document_id")
    items = [(item.created_at, {"source": "model", **serialise(item)}) for item in history]
    items += [
        (review.created_at, serialise_review(review))
        for review in services.review.for_document(document_id)
    ]
    items.sort(key=lambda item: item[0], reverse=True)  # stable: equal times keep their order
    return {**serialise(history[0]), "history": [item for _, item in items]}
