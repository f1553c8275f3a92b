"""The glue between Flask and the appliance: where a request finds its ``Services`` and its
``RequestContext``. The only module that reads ``app.extensions`` or keeps state in ``flask.g``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask, current_app, g, has_request_context

from appliance.context import RequestContext

if TYPE_CHECKING:
    from appliance.services import Services

SERVICES_KEY = "appliance.services"


def install_services(app: Flask, services: Services) -> None:
    app.extensions[SERVICES_KEY] = services


def services_of(app: Flask) -> Services:
    services: Services = app.extensions[SERVICES_KEY]
    return services


def current_services() -> Services:
    return services_of(current_app)


def begin_request(context: RequestContext) -> None:
    g.request_context = context


def request_context() -> RequestContext:
    """The current request's context (made by the first request hook)."""
    context: RequestContext = g.request_context
    return context


def current_request_id() -> str | None:
    """For log lines: the request id when inside a request that has one."""
    if not has_request_context():
        return None
    context: RequestContext | None = g.get("request_context")
    return context.request_id if context else None
