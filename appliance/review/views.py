"""HTTP views for reviews: parse, check roles, call the service, serialise."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from flask import Blueprint, current_app, g, request

from appliance.classification.interfaces import RequestContext
from appliance.classification.views import serialise
from appliance.errors import InvalidRequest, NotFound
from appliance.identity.access import current_identity, requires_roles
from appliance.requests import json_body, validate
from appliance.review.schemas import ReviewIn
from appliance.review.services import MAX_QUEUE_PAGE, Review, ReviewService

bp = Blueprint("review", __name__, url_prefix="/api/v1")
SERVICE_KEY = "appliance.review"
DEFAULT_QUEUE_PAGE = 50
MAX_REVIEW_BODY_BYTES = 64 * 1024


def review_service() -> ReviewService:
    service: ReviewService = current_app.extensions[SERVICE_KEY]
    return service


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
        "audit_seq": review.audit_seq,
        "timestamp": review.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    if review.audit_seq is None and review.audit_event_id is not None:
        body["audit_event_id"] = review.audit_event_id
    return body


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _limit() -> int:
    raw = request.args.get("limit", str(DEFAULT_QUEUE_PAGE))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_QUEUE_PAGE:
        raise InvalidRequest(f"limit: got {raw!r}, want an integer 1..{MAX_QUEUE_PAGE}")
    return int(raw)


@bp.get("/review-queue")
@requires_roles("reviewer")
def review_queue() -> dict[str, Any]:
    limit = _limit()
    after = None
    if "after" in request.args:
        after = _uuid(request.args["after"])
        if after is None:
            raise InvalidRequest("after: want the result_id of the last item of the last page")
    results = review_service().queue(limit, after)
    next_after = str(results[-1].result_id) if len(results) == limit else None
    return {"results": [serialise(result) for result in results], "next_after": next_after}


@bp.post("/classifications/<string:result_id>/review")
@requires_roles("reviewer")
def review_classification(result_id: str) -> tuple[dict[str, Any], int]:
    parsed_id = _uuid(result_id)
    if parsed_id is None:
        raise NotFound("no classification result has this id")
    body = validate(ReviewIn, json_body(request, MAX_REVIEW_BODY_BYTES))
    context = RequestContext(
        request_id=g.request_id, identity=current_identity(), source_address=request.remote_addr
    )
    review = review_service().review(parsed_id, body.label, body.note, context)
    g.audit_document_id = review.document_id
    g.audit_recorded = True
    return serialise_review(review), 201


def history_items(document_id: str) -> list[tuple[datetime, dict[str, Any]]]:
    """The reviews of ``document_id`` as items of its classification history."""
    return [
        (review.created_at, serialise_review(review))
        for review in review_service().for_document(document_id)
    ]
