"""Audit every request: each view declares its operation (``declare.audited``) and the request's
context carries it from the first hook on, so a denied request is recorded under the same name
as an allowed one. Services record their operation with the row they write; ``audit_request``
records every request that no service recorded (denied, failed, reads, audit queries). If that
write fails the response becomes a 503: nothing proceeds unaudited. Health probes are not
audited (they touch no data and would flood the log).
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, request

from appliance.audit_bridge import views
from appliance.audit_bridge.declare import UNAUDITED_PREFIXES, declared_action
from appliance.audit_bridge.interfaces import Action
from appliance.audit_bridge.recorder import Subject
from appliance.error_handlers import error_response
from appliance.errors import AuditUnavailable, DatabaseUnavailable
from appliance.text import is_storable
from appliance.web import current_services, request_context

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Register the auditor endpoints and the hooks. Call after the request-context hooks are
    registered (so ours run after that one begins the context, and before it ends)."""
    app.register_blueprint(views.bp)
    app.before_request(note_action)
    app.after_request(audit_request)


def note_action() -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    request_context().action = declared_action(view) if view else None


def audit_request(response: Response) -> Response:
    """After every request: record it unless its operation is on record; fail closed."""
    if request.path.startswith(UNAUDITED_PREFIXES):
        return response
    context = request_context()
    action = context.action or Action.UNMATCHED_ROUTE
    if action in context.recorded:
        return response
    document_id = (request.view_args or {}).get("document_id")
    # A hostile id (a NUL) was refused by the view; the event records the request without it.
    subject = Subject(document_id=document_id if is_storable(document_id or "") else None)
    try:
        current_services().audit.record_outcome(
            context, action, response.status_code, subject, context.error_code
        )
    except DatabaseUnavailable as exc:
        log.warning("audit write failed, the database is unavailable; answering 503")
        return error_response(exc)
    except Exception:
        log.exception("audit write failed; answering 503")
        return error_response(
            AuditUnavailable("the audit log is unavailable; the request was not completed")
        )
    return response
