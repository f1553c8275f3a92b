"""Which operation each view performs, declared next to the view with ``@audited(Action.X)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask

from appliance.audit_bridge.interfaces import Action

UNAUDITED_PREFIXES = ("/health/", "/api/v1/health")
UNAUDITED_ENDPOINTS = frozenset({"static"})

View = TypeVar("View", bound=Callable[..., Any])
_DECLARED: dict[Callable[..., Any], Action] = {}


def audited(action: Action) -> Callable[[View], View]:
    """Declare the operation a view performs (put it above ``requires_roles``, so that it is
    known for denied requests too)."""

    def declare(view: View) -> View:
        _DECLARED[view] = action
        return view

    return declare


def declared_action(view: Callable[..., Any]) -> Action | None:
    return _DECLARED.get(view)


def undeclared_endpoints(app: Flask) -> list[str]:
    """Endpoints whose view declares no ``Action`` (health probes need none)."""
    return sorted(
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in UNAUDITED_ENDPOINTS
        and not rule.rule.startswith(UNAUDITED_PREFIXES)
        and declared_action(app.view_functions[rule.endpoint]) is None
    )
