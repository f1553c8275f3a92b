"""``GET /api/v1/usage``: a caller's own quota windows; for the ``admin`` role, everyone's."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from appliance.audit_bridge.declare import audited
from appliance.audit_bridge.interfaces import Action
from appliance.identity.access import requires_roles
from appliance.usage.schemas import serialise_usage
from appliance.web import current_services, request_context

bp = Blueprint("usage", __name__, url_prefix="/api/v1")


@bp.get("/usage")
@audited(Action.READ_USAGE)
@requires_roles("classifier", "admin")
def get_usage() -> dict[str, Any]:
    quotas = current_services().classification.quotas
    identity = request_context().identity
    assert identity is not None  # requires_roles let it through
    if "admin" in identity.roles:
        return serialise_usage(quotas.everyones_usage())
    return serialise_usage(quotas.usage(identity))
