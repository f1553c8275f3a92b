"""Auditor endpoints (role ``auditor``). Thin: parse, call ``audit.service``, serialise.

Every request here is itself audited by the request hook (``appliance.audit_bridge.hooks``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, request

from appliance.audit_bridge.declare import audited
from appliance.audit_bridge.interfaces import Action
from appliance.audit_bridge.services import AuditReader, translated
from appliance.errors import InvalidRequest, NotFound, ServiceUnavailable
from appliance.identity.access import requires_roles
from appliance.requests import IntegerQuery, storable_parameter
from appliance.web import current_services
from audit import service, store, verify_pass
from audit.errors import AuditError

bp = Blueprint("audit", __name__, url_prefix="/api/v1/audit")
MAX_LIMIT = 1000

OUTCOME = IntegerQuery("outcome", 100, 599, description="The HTTP status answered")
AFTER_SEQ = IntegerQuery("after_seq", -1, default=-1, description="next_after_seq of a page")
LIMIT = IntegerQuery("limit", 1, MAX_LIMIT, default=100)
TREE_SIZE = IntegerQuery("tree_size", 1, description="Default: the latest checkpoint's size")
FROM_SIZE = IntegerQuery("from", 1, description="The older tree size")
TO_SIZE = IntegerQuery("to", 1, description="The newer tree size")
SEARCH_TEXT = ("actor", "document_id", "action")
SEARCH_TIMES = ("since", "until")


def _reader() -> AuditReader:
    return current_services().audit_reader


def _text(name: str) -> str | None:
    raw = request.args.get(name)
    return storable_parameter(name, raw) if raw else None


def _time(name: str) -> datetime | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise InvalidRequest(f"{name}: got {raw!r}, want an ISO 8601 time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@bp.get("/events")
@audited(Action.AUDIT_SEARCH)
@requires_roles("auditor")
def audit_search_events() -> dict[str, Any]:
    reader = _reader()
    where = store.SearchFilter(
        actor=_text("actor"),
        resource=reader.resource(_text("document_id")),
        action=_text("action"),
        outcome_status=OUTCOME.read(request.args),
        since=_time("since"),
        until=_time("until"),
        after_seq=AFTER_SEQ.require(request.args),
        limit=LIMIT.require(request.args),
    )
    with translated(), reader.connection() as conn:
        events = [service.entry_json(seq, entry) for seq, entry in store.search(conn, where)]
    next_after = events[-1]["seq"] if len(events) == where.limit else None
    return {"events": events, "next_after_seq": next_after}


@bp.get("/events/<int:seq>")
@audited(Action.AUDIT_READ_EVENT)
@requires_roles("auditor")
def audit_get_event(seq: int) -> dict[str, Any]:
    with translated(), _reader().connection() as conn:
        entry = store.entry_at(conn, seq)
    if entry is None:
        raise NotFound(f"no sealed audit entry with seq {seq}")
    return service.entry_json(seq, entry)


@bp.get("/events/<int:seq>/proof")
@audited(Action.AUDIT_INCLUSION_PROOF)
@requires_roles("auditor")
def audit_inclusion_proof(seq: int) -> dict[str, Any]:
    tree_size = TREE_SIZE.read(request.args)
    with translated(), _reader().connection() as conn:
        return service.inclusion(conn, seq, tree_size)


@bp.get("/checkpoints/latest")
@audited(Action.AUDIT_READ_CHECKPOINT)
@requires_roles("auditor")
def audit_latest_checkpoint() -> Response:
    with translated(), _reader().connection() as conn:
        latest = store.latest_checkpoint(conn)
    if latest is None:
        raise NotFound("no checkpoint has been signed yet")
    return Response(latest.note, content_type="text/plain; charset=utf-8")


@bp.get("/consistency")
@audited(Action.AUDIT_CONSISTENCY_PROOF)
@requires_roles("auditor")
def audit_consistency() -> dict[str, Any]:
    size1, size2 = FROM_SIZE.require(request.args), TO_SIZE.require(request.args)
    with translated(), _reader().connection() as conn:
        return service.consistency(conn, size1, size2)


@bp.post("/verify")
@audited(Action.AUDIT_VERIFY)
@requires_roles("auditor")
def audit_verify() -> dict[str, Any]:
    """The next bounded step of a full verification pass (``audit.verify_pass``), and the
    integrity report of what it checked."""
    reader = _reader()
    if reader.trust is None:
        raise ServiceUnavailable("no audit signing key is configured; verification is unavailable")
    limit = current_services().settings.audit_verify_max_entries
    extra: dict[str, Any] = {"origin": reader.origin, "source": "postgresql"}
    with translated(), reader.connection() as conn:
        try:
            done = verify_pass.step(conn, reader.trust, limit)
            result, problem = done.result, None
            extra["verification"] = done.summary()
            if done.cross_check is not None:
                extra["cross_check"] = done.cross_check.summary()
        except AuditError as exc:
            result, problem = None, exc
        return service.report(result, problem, **extra)
