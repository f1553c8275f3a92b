"""The appliance's error types. Each carries its HTTP status and a stable snake_case code.

Domain code raises these. ``body`` is the one definition of the JSON error shape of the API
contract; ``appliance.error_handlers`` is the one place that turns errors into HTTP responses.
"""

from __future__ import annotations

from typing import Any


class ApplianceError(Exception):
    """Base of every error the API answers on purpose."""

    status = 500
    code = "internal_error"
    retry_after_s: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self, request_id: str | None) -> dict[str, Any]:
        """``{"error": {"code", "message", "request_id"}}``: the API's error shape."""
        return {"error": {"code": self.code, "message": self.message, "request_id": request_id}}


class InvalidRequest(ApplianceError):
    """The body is not the JSON we accept (malformed, wrong types, failed validation)."""

    status = 400
    code = "invalid_request"


class MalformedJSON(InvalidRequest):
    code = "malformed_json"


class Unauthenticated(ApplianceError):
    status = 401
    code = "unauthenticated"


class Forbidden(ApplianceError):
    status = 403
    code = "forbidden"


class NotFound(ApplianceError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ApplianceError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, allow: list[str] | None = None) -> None:
        """``allow``: the methods the resource has (the ``Allow`` header, RFC 9110)."""
        super().__init__(message)
        self.allow = sorted(allow or [])


class PayloadTooLarge(ApplianceError):
    status = 413
    code = "payload_too_large"


class TooManyPages(PayloadTooLarge):
    code = "too_many_pages"


class TooManyPixels(PayloadTooLarge):
    """An image (or a rendered page) larger than the pixel limit: a decompression bomb."""

    code = "too_many_pixels"


class ExpandsTooFar(PayloadTooLarge):
    """An archive (DOCX) whose content is much larger than the file: a zip bomb."""

    code = "expands_too_far"


class UnsupportedMediaType(ApplianceError):
    status = 415
    code = "unsupported_media_type"


class MediaTypeMismatch(UnsupportedMediaType):
    """The declared media type is not what the content is."""

    code = "media_type_mismatch"


class UnprocessableDocument(ApplianceError):
    """A well-formed request whose file cannot be read: corrupt, truncated, or no text in it."""

    status = 422
    code = "unreadable_document"


class EncryptedDocument(UnprocessableDocument):
    code = "encrypted_document"


class EmptyDocument(UnprocessableDocument):
    code = "empty_document"


class OcrTimeout(UnprocessableDocument):
    """A page took longer than the per-page OCR limit."""

    code = "ocr_timeout"


class NotYetAvailable(ApplianceError):
    """What was asked for exists but is not ready yet (an audit event not yet sealed and
    signed): ask again after ``Retry-After``."""

    status = 409
    code = "not_yet_available"
    retry_after_s = 1


class QuotaExceeded(ApplianceError):
    """The caller's quota for this window is spent: ask again after ``Retry-After`` (when the
    window ends)."""

    status = 429
    code = "quota_exceeded"

    def __init__(self, measure: str, period: str, retry_after_s: int) -> None:
        super().__init__(f"the {measure} quota for this {period} is used up")
        self.measure = measure
        self.period = period
        self.retry_after_s = retry_after_s


class UpstreamInvalidResponse(ApplianceError):
    """The model server answered, but not with something we can use."""

    status = 502
    code = "upstream_invalid_response"


class ServiceUnavailable(ApplianceError):
    status = 503
    code = "service_unavailable"
    retry_after_s = 5


class UpstreamUnavailable(ServiceUnavailable):
    code = "upstream_unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"


class AuditUnavailable(ServiceUnavailable):
    """The audit log could not record the access: the request must not proceed."""

    code = "audit_unavailable"


class UpstreamTimeout(ApplianceError):
    status = 504
    code = "upstream_timeout"


class HttpError(ApplianceError):
    """Any other HTTP-level refusal (werkzeug's), with its own status."""

    code = "http_error"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
