"""The one place errors become HTTP responses, in the shape ``ApplianceError.body`` defines.

Domain errors keep their status and code; werkzeug's HTTP errors (404, 405, 413 ...) become
``ApplianceError``s first; anything else is a 500 logged with its traceback. The code answered
is noted in the request context, for the audit event.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed as WerkzeugMethodNotAllowed

from appliance.errors import (
    ApplianceError,
    HttpError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
)
from appliance.web import request_context

log = logging.getLogger(__name__)
HTTP_ERRORS: dict[int, type[ApplianceError]] = {
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
}
INTERNAL = "internal error; see the request id in logs"
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024
"""A refused body up to this size is read and dropped, so the client reads the 413."""


def error_response(error: ApplianceError) -> Response:
    """The JSON response for ``error``, with ``Retry-After`` when it says when to retry."""
    context = request_context()
    context.error_code = error.code
    response = jsonify(error.body(context.request_id))
    response.status_code = error.status
    if error.retry_after_s is not None:
        response.headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, MethodNotAllowed) and error.allow:
        response.headers["Allow"] = ", ".join(error.allow)
    if isinstance(error, PayloadTooLarge):
        _discard_unread_body()
    return response


def _discard_unread_body() -> None:
    """Read and drop what the client is still sending. Most clients send the whole body before
    they read the answer: if the server closed the connection under them they would see a reset
    instead of the 413. Past ``DRAIN_LIMIT_BYTES`` the connection is closed after all."""
    remaining = request.content_length or 0
    if remaining > DRAIN_LIMIT_BYTES:
        return
    stream = request.environ["wsgi.input"]
    while remaining > 0:
        chunk = stream.read(min(remaining, 64 * 1024))
        if not chunk:
            return
        remaining -= len(chunk)


def from_http_exception(exc: HTTPException) -> ApplianceError:
    status = exc.code or 500
    message = exc.description or exc.name
    if isinstance(exc, WerkzeugMethodNotAllowed):
        return MethodNotAllowed(message, list(exc.valid_methods or []))
    kind = HTTP_ERRORS.get(status)
    return kind(message) if kind else HttpError(status, message)


def init_app(app: Flask) -> None:
    @app.errorhandler(ApplianceError)
    def appliance_error(exc: ApplianceError) -> Response:
        if exc.status >= 500:
            log.warning("request failed", extra={"error_code": exc.code, "status": exc.status})
        return error_response(exc)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return error_response(from_http_exception(exc))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unexpected error")
        return error_response(ApplianceError(INTERNAL))
