"""A tiny WSGI app behind the identity middleware, served by gunicorn in the TLS tests.

``/whoami`` shows the identity the middleware published and any identity-looking environ keys
left over; ``/slow`` takes 2 s; ``/metrics`` needs the ``metrics`` role (403 JSON otherwise);
``/health/live`` is open.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY, Identity
from appliance.identity.middleware import StartResponse, with_client_identity
from appliance.identity.roles import load_role_map


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def _error(start_response: StartResponse, status: str, code: str) -> list[bytes]:
    return _json(
        start_response, status, {"error": {"code": code, "message": code, "request_id": "-"}}
    )


def bare_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    identity = environ.get(IDENTITY_ENVIRON_KEY)
    path = environ.get("PATH_INFO", "")
    if path == "/health/live":
        return _json(start_response, "200 OK", {"status": "live"})
    if not isinstance(identity, Identity):
        return _error(start_response, "401 Unauthorized", "unauthenticated")
    if path == "/slow":  # an in-flight request for the graceful-reload test
        time.sleep(2)
        return _json(start_response, "200 OK", {"serial": identity.serial})
    if path == "/metrics":
        if "metrics" not in identity.roles:
            return _error(start_response, "403 Forbidden", "forbidden")
        return _json(start_response, "200 OK", {"metrics": "ok"})
    if path == "/whoami":
        leftovers = sorted(
            key
            for key in environ
            if "CLIENT" in key.upper() or key.upper().startswith(("SSL_", "HTTP_X_SSL"))
        )
        return _json(
            start_response,
            "200 OK",
            {
                "subject": identity.subject,
                "sans": list(identity.sans),
                "serial": identity.serial,
                "fingerprint_sha256": identity.fingerprint_sha256,
                "roles": sorted(identity.roles),
                "name": identity.name,
                "leftover_keys": leftovers,
            },
        )
    return _error(start_response, "404 Not Found", "not_found")


_roles = os.environ.get("APPLIANCE_ROLES_PATH")
_crl = os.environ.get("APPLIANCE_TLS_CRL")
app = with_client_identity(bare_app, load_role_map(Path(_roles) if _roles else None),
                           Path(_crl) if _crl else None)
