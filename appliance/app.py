"""The Flask application factory. No side effects: no migrations, no network calls, no sleeping.

Everything a request needs is built here once per worker and kept in ``app.extensions``; the
warm-up is started by gunicorn's ``post_worker_init`` hook (see gunicorn_conf.py).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from appliance import audit_bridge, metrics, review
from appliance.audit_bridge.interfaces import AuditSink
from appliance.classification import views as classification_views
from appliance.classification.labeller import Labeller
from appliance.classification.services import ClassificationService
from appliance.classification.taxonomy import load_taxonomy
from appliance.db import make_engine
from appliance.errors import ApplianceError
from appliance.health import views as health_views
from appliance.health.startup import StartupState
from appliance.identity.access import requires_roles
from appliance.identity.tls import TlsExpiryCollector
from appliance.logging import configure_logging
from appliance.openapi import build_spec
from appliance.settings import Settings
from appliance.vllm.client import VllmClient, VllmConfig

log = logging.getLogger(__name__)
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def create_app(settings: Settings | None = None, audit_sink: AuditSink | None = None) -> Flask:
    """Build the app. ``audit_sink`` replaces the PostgreSQL audit sink (tests of the core only)."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_batch_request_bytes
    engine = make_engine(settings)
    taxonomy = load_taxonomy(settings.taxonomy_path)
    vllm = VllmClient(_vllm_config(settings))
    labeller = Labeller(vllm, taxonomy, settings.max_document_tokens)
    app.extensions.update(
        {
            "appliance.settings": settings,
            "appliance.engine": engine,
            "appliance.vllm": vllm,
            "appliance.taxonomy": taxonomy,
            "appliance.startup": StartupState(engine, labeller),
        }
    )
    if audit_sink is None:
        audit_bridge.init_app(app)
    else:
        app.extensions["appliance.audit_sink"] = audit_sink
    app.extensions["appliance.classification"] = ClassificationService(
        engine=engine,
        labeller=labeller,
        taxonomy_version=taxonomy.version,
        review_threshold=settings.review_threshold,
        label_thresholds=taxonomy.review_thresholds,
        audit_sink=app.extensions["appliance.audit_sink"],
        max_concurrency=settings.vllm_max_concurrency,
    )
    review.init_app(app)
    _register_request_hooks(app)
    _register_error_handlers(app)
    app.register_blueprint(classification_views.bp)
    app.register_blueprint(health_views.bp)
    _register_service_endpoints(app)
    return app


def _vllm_config(settings: Settings) -> VllmConfig:
    return VllmConfig(
        base_url=settings.vllm_base_url,
        model=settings.vllm_model,
        api_key=settings.vllm_api_key,
        connect_timeout_s=settings.vllm_connect_timeout_s,
        read_timeout_s=settings.vllm_read_timeout_s,
        max_retries=settings.vllm_max_retries,
        max_connections=settings.vllm_max_concurrency * 2,
    )


def _register_request_hooks(app: Flask) -> None:
    @app.before_request
    def assign_request_id() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if REQUEST_ID_PATTERN.match(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def measure(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        route = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        started = g.get("started")
        if started is not None:
            elapsed = time.perf_counter() - started
            metrics.REQUEST_LATENCY.labels(route, request.method).observe(elapsed)
        return response


def error_response(status: int, code: str, message: str) -> tuple[Response, int]:
    body = {"error": {"code": code, "message": message, "request_id": g.get("request_id")}}
    return jsonify(body), status


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApplianceError)
    def appliance_error(exc: ApplianceError) -> tuple[Response, int]:
        g.audit_error_code = exc.code
        response, status = error_response(exc.status, exc.code, exc.message)
        if exc.retry_after_s is not None:
            response.headers["Retry-After"] = str(exc.retry_after_s)
        if status >= 500:
            log.warning("request failed", extra={"error_code": exc.code, "status": status})
        return response, status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        code = HTTP_ERROR_CODES.get(status, "http_error")
        g.audit_error_code = code
        return error_response(status, code, exc.description or code)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unexpected error")
        g.audit_error_code = "internal_error"
        return error_response(500, "internal_error", "internal error; see the request id in logs")


def _register_service_endpoints(app: Flask) -> None:
    spec = build_spec()

    @app.get("/api/v1/openapi.json")
    def openapi() -> dict[str, Any]:
        return spec

    settings: Settings = app.extensions["appliance.settings"]
    tls_expiry = TlsExpiryCollector(settings.tls_cert, settings.tls_crl)

    @app.get("/metrics")
    @requires_roles("metrics")
    def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition(tls_expiry)
        return Response(body, content_type=content_type)
