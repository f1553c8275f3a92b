"""Health probes. They sit behind the same mTLS listener but need no role: any verified caller,
including the orchestrator's probe certificate, may ask whether the service is up."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy.exc import SQLAlchemyError

from appliance import db
from appliance.errors import ApplianceError
from appliance.web import current_services

bp = Blueprint("health", __name__)


def _checks() -> dict[str, bool]:
    services = current_services()
    try:
        db.ping(services.engine)
        database = True
    except ApplianceError:
        database = False
    return {"database": database, "vllm": services.backend.is_healthy()}


def _report(checks: dict[str, bool]) -> tuple[dict[str, Any], int]:
    ok = all(checks.values())
    return {"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503


@bp.get("/health/live")
def live() -> dict[str, str]:
    return {"status": "ok"}


@bp.get("/health/ready")
@bp.get("/api/v1/health")
def ready() -> tuple[dict[str, Any], int]:
    return _report(_checks())


@bp.get("/health/startup")
def startup() -> tuple[dict[str, Any], int]:
    state = current_services().startup
    try:
        migrated = state.migrations_at_head()
    except SQLAlchemyError:
        migrated = False
    return _report({"migrations_at_head": migrated, "warmed_up": state.warmed_up})
