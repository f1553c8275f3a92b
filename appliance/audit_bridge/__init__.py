"""The only place the HTTP API touches the audit log library (``audit/``).

``init_app`` wires in the PostgreSQL sink, the auditor endpoints and the request hook that audits
every request not already audited with its result (denied, failed, reads, audit queries). If that
audit write fails the response becomes a 503: nothing proceeds unaudited. Health probes are not
audited (they touch no data and would flood the log).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import Flask, Response, current_app, g, jsonify, request

from appliance.audit_bridge import views
from appliance.audit_bridge.interfaces import AuditEvent, AuditSink
from appliance.audit_bridge.services import AuditReader, PostgresAuditSink
from appliance.errors import AuditUnavailable
from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY, Identity
from appliance.settings import Settings
from audit import pseudonym

SINK_KEY = "appliance.audit_sink"
UNAUDITED_PREFIXES = ("/health/", "/api/v1/health")
log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    settings: Settings = app.extensions["appliance.settings"]
    engine = app.extensions["appliance.engine"]
    key = None
    if settings.audit_pseudonym_key_path is not None:
        key = pseudonym.load_key(settings.audit_pseudonym_key_path)
    sink = PostgresAuditSink(engine, key)
    app.extensions[SINK_KEY] = sink
    app.extensions[views.READER_KEY] = AuditReader(engine, settings, sink)
    app.register_blueprint(views.bp)
    app.after_request(audit_request)


def request_event(response: Response) -> AuditEvent:
    """The audit event of the current request, from what the request and its views left in g."""
    identity = request.environ.get(IDENTITY_ENVIRON_KEY)
    identity = identity if isinstance(identity, Identity) else None
    endpoint = request.endpoint.rsplit(".", 1)[-1] if request.endpoint else "unmatched_route"
    return AuditEvent(
        occurred_at=datetime.now(UTC),
        actor_subject=identity.name if identity else None,
        actor_fingerprint=identity.fingerprint_sha256 if identity else None,
        source_address=request.remote_addr,
        action=f"{request.method.lower()}:{endpoint}",
        outcome_status=response.status_code,
        request_id=str(g.get("request_id", "")),
        error_code=g.get("audit_error_code"),
        document_id=g.get("audit_document_id") or (request.view_args or {}).get("document_id"),
    )


def audit_request(response: Response) -> Response:
    """After every request: record it unless already recorded; fail closed with a 503."""
    if g.get("audit_recorded") or request.path.startswith(UNAUDITED_PREFIXES):
        return response
    sink: AuditSink = current_app.extensions[SINK_KEY]
    try:
        sink.record_standalone(request_event(response))
    except Exception:
        log.exception("audit write failed; answering 503")
        error = AuditUnavailable("the audit log is unavailable; the request was not completed")
        body = {
            "error": {
                "code": error.code,
                "message": error.message,
                "request_id": g.get("request_id"),
            }
        }
        failed = jsonify(body)
        failed.status_code = error.status
        failed.headers["Retry-After"] = str(error.retry_after_s)
        failed.headers["X-Request-ID"] = str(g.get("request_id", ""))
        return failed
    g.audit_recorded = True
    return response
