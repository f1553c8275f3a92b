"""The app as tests build it: ``Services`` from settings (with optional replacements), then
``create_app`` over them; the services are closed afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from flask import Flask

from appliance.app import create_app
from appliance.services import build_services
from appliance.settings import Settings


@contextlib.contextmanager
def app_over(settings: Settings, **overrides: Any) -> Iterator[Flask]:
    """``overrides`` go to ``build_services`` (``backend=``, ``audit_sink=``, ``clock=``)."""
    services = build_services(settings, **overrides)
    try:
        yield create_app(services)
    finally:
        services.close()
