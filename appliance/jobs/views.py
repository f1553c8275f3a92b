"""HTTP views for bulk jobs: submit JSON Lines, read state and results, cancel."""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

from flask import Blueprint, request

from appliance.audit_bridge.declare import audited
from appliance.audit_bridge.interfaces import Action
from appliance.errors import InvalidRequest, UnsupportedMediaType
from appliance.identity.access import requires_roles
from appliance.jobs.callbacks import allowed_callback
from appliance.jobs.items import parse_items
from appliance.jobs.schemas import serialise_item, serialise_job
from appliance.requests import IntegerQuery, body_bytes
from appliance.web import current_services, request_context

bp = Blueprint("jobs", __name__, url_prefix="/api/v1")
JSON_LINES = ("application/x-ndjson", "application/jsonl")
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,256}")
"""Printable ASCII without spaces, at most 256 characters (a UUID, say)."""
RESULTS_LIMIT = IntegerQuery("limit", 1, 1000, default=100)
RESULTS_AFTER = IntegerQuery("after", 0, default=0, description="next_after of the previous page")


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidRequest("Idempotency-Key: want 1 to 256 printable ASCII characters")
    return key


@bp.post("/jobs")
@audited(Action.SUBMIT_JOB)
@requires_roles("classifier")
def submit_job() -> tuple[dict[str, Any], int, dict[str, str]]:
    """The body is JSON Lines, one document per line (as ``classify-document`` takes it); the
    query parameter ``callback_url`` (allow-listed) is told when the job ends."""
    services = current_services()
    settings = services.settings
    if request.mimetype not in JSON_LINES:
        raise UnsupportedMediaType(f"send the job as JSON Lines ({' or '.join(JSON_LINES)})")
    key = _idempotency_key()
    callback = request.args.get("callback_url")
    if callback is not None:
        callback = allowed_callback(callback, settings.job_callback_allowed_urls)
    body = body_bytes(request, settings.job_max_request_bytes)
    items = parse_items(body, settings.max_text_bytes, settings.job_max_items)
    digest = hashlib.sha256(body + b"\ncallback:" + (callback or "").encode()).hexdigest()
    status = services.jobs.submit(request_context(), items, digest, key, callback)
    return serialise_job(status), 202, {"Location": f"/api/v1/jobs/{status.job_id}"}


@bp.get("/jobs/<uuid:job_id>")
@audited(Action.READ_JOB)
@requires_roles("classifier", "auditor")
def get_job(job_id: uuid.UUID) -> dict[str, Any]:
    return serialise_job(current_services().jobs.status(job_id, request_context()))


@bp.get("/jobs/<uuid:job_id>/results")
@audited(Action.READ_JOB_RESULTS)
@requires_roles("classifier", "auditor")
def get_job_results(job_id: uuid.UUID) -> dict[str, Any]:
    after = RESULTS_AFTER.require(request.args)
    limit = RESULTS_LIMIT.require(request.args)
    context = request_context()
    items = current_services().jobs.results(job_id, context, after, limit)
    return {
        "items": [serialise_item(item, context.request_id) for item in items],
        "next_after": items[-1].position if len(items) == limit else None,
    }


@bp.post("/jobs/<uuid:job_id>/cancel")
@audited(Action.CANCEL_JOB)
@requires_roles("classifier")
def cancel_job(job_id: uuid.UUID) -> dict[str, Any]:
    return serialise_job(current_services().jobs.cancel(job_id, request_context()))
