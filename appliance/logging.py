"""Structured JSON logs on stderr, each line with the request id when there is one.

Never log document text or request bodies: log ids, hashes, sizes and outcomes.
"""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter

from appliance.web import current_request_id


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


def configure_logging(level: str) -> None:
    """Replace the root handlers with one JSON handler (idempotent)."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
