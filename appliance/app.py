"""The Flask application factory. No side effects: no migrations, no network calls, no sleeping.

``create_app(services)`` puts a ``Services`` (built by ``appliance.services.build_services``)
behind HTTP: each domain wires in its blueprint with ``init_app``. The warm-up is started by
gunicorn's ``post_worker_init`` hook (see gunicorn_conf.py).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from flask import Flask, Response, request

from appliance import error_handlers, metrics
from appliance.audit_bridge import hooks as audit_hooks
from appliance.audit_bridge.declare import audited, undeclared_endpoints
from appliance.audit_bridge.interfaces import Action
from appliance.classification import views as classification_views
from appliance.context import RequestContext
from appliance.health import views as health_views
from appliance.identity.access import current_identity, requires_roles
from appliance.identity.tls import TlsExpiryCollector
from appliance.jobs import views as job_views
from appliance.jobs.metrics import JobQueueCollector
from appliance.logging import configure_logging
from appliance.openapi import build_spec
from appliance.requests import InMemoryUploads
from appliance.review import views as review_views
from appliance.review.metrics import ReviewQueueCollector
from appliance.services import Services, build_services
from appliance.settings import Settings
from appliance.usage import views as usage_views
from appliance.web import begin_request, install_services, request_context

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods named in metrics labels; any other (callers may invent them) is counted as "other"."""


def create_app(services: Services | None = None) -> Flask:
    """Build the app over ``services`` (by default: built from the environment's settings)."""
    services = services or build_services(Settings())
    settings = services.settings
    configure_logging(settings.log_level)
    app = Flask(__name__)
    app.request_class = InMemoryUploads
    app.config["MAX_CONTENT_LENGTH"] = settings.max_batch_request_bytes
    install_services(app, services)
    _register_request_hooks(app)
    audit_hooks.init_app(app)  # after the request hooks: see its docstring
    error_handlers.init_app(app)
    app.register_blueprint(classification_views.bp)
    app.register_blueprint(review_views.bp)
    app.register_blueprint(job_views.bp)
    app.register_blueprint(usage_views.bp)
    app.register_blueprint(health_views.bp)
    _register_service_endpoints(app, services)
    undeclared = undeclared_endpoints(app)
    if undeclared:
        raise RuntimeError(f"views without an audited(Action) declaration: {undeclared}")
    return app


def _register_request_hooks(app: Flask) -> None:
    @app.before_request
    def begin() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if REQUEST_ID_PATTERN.match(incoming) else uuid.uuid4().hex
        begin_request(RequestContext(request_id, current_identity(), request.remote_addr))

    @app.after_request
    def measure(response: Response) -> Response:
        """Runs last (after hooks run in reverse order), so it sees the final response."""
        context = request_context()
        response.headers["X-Request-ID"] = context.request_id
        route = request.url_rule.rule if request.url_rule else "unmatched"
        method = request.method if request.method in METHODS else "other"
        metrics.REQUESTS.labels(route, method, str(response.status_code)).inc()
        elapsed = time.perf_counter() - context.started
        metrics.REQUEST_LATENCY.labels(route, method).observe(elapsed)
        return response


def _register_service_endpoints(app: Flask, services: Services) -> None:
    settings = services.settings
    spec = build_spec(services.taxonomy.names, settings.max_batch_documents)

    @app.get("/api/v1/openapi.json")
    @audited(Action.READ_OPENAPI)
    def openapi() -> dict[str, Any]:
        return spec

    tls_expiry = TlsExpiryCollector(settings.tls_cert, settings.tls_crl)
    job_queue = JobQueueCollector(services.engine)
    review_queue = ReviewQueueCollector(services.engine)

    @app.get("/metrics")
    @audited(Action.READ_METRICS)
    @requires_roles("metrics")
    def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition(tls_expiry, job_queue, review_queue)
        return Response(body, content_type=content_type)
