"""HTTP views for reviews: parse, check roles, call the service, serialise."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, request

from appliance.audit_bridge.declare import audited
from appliance.audit_bridge.interfaces import Action
from appliance.classification.schemas import serialise
from appliance.errors import InvalidRequest, NotFound
from appliance.identity.access import requires_roles
from appliance.requests import IntegerQuery, json_body
from appliance.review.schemas import ReviewIn, serialise_review
from appliance.review.services import MAX_QUEUE_PAGE
from appliance.validation import validate
from appliance.web import current_services, request_context

bp = Blueprint("review", __name__, url_prefix="/api/v1")
MAX_REVIEW_BODY_BYTES = 64 * 1024
QUEUE_LIMIT = IntegerQuery("limit", 1, MAX_QUEUE_PAGE, default=50)


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


@bp.get("/review-queue")
@audited(Action.READ_REVIEW_QUEUE)
@requires_roles("reviewer")
def review_queue() -> dict[str, Any]:
    limit = QUEUE_LIMIT.require(request.args)
    after = None
    if "after" in request.args:
        after = _uuid(request.args["after"])
        if after is None:
            raise InvalidRequest("after: want the result_id of the last item of the last page")
    results = current_services().review.queue(limit, after)
    next_after = str(results[-1].result_id) if len(results) == limit else None
    return {"results": [serialise(result) for result in results], "next_after": next_after}


@bp.post("/classifications/<string:result_id>/review")
@audited(Action.REVIEW_CLASSIFICATION)
@requires_roles("reviewer")
def review_classification(result_id: str) -> tuple[dict[str, Any], int]:
    parsed_id = _uuid(result_id)
    if parsed_id is None:
        raise NotFound("no classification result has this id")
    body = validate(ReviewIn, json_body(request, MAX_REVIEW_BODY_BYTES))
    review = current_services().review.review(parsed_id, body.label, body.note, request_context())
    return serialise_review(review), 201
