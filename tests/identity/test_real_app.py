"""The production wiring: ``appliance.wsgi:app`` under ``appliance/gunicorn_conf.py``, over mTLS.

Real endpoints: ``/health/live`` is open to any verified certificate, ``/metrics`` needs the
``metrics`` role. PostgreSQL is real (the session's migrated database); vLLM is not needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness.tls import REPO, DevPki, GunicornServer, run_gunicorn
from tests.identity.clients import refusal
from tests.identity.test_access import FORGED_HEADERS


@pytest.fixture(scope="module")
def appliance_server(
    dev_pki: DevPki,
    roles_file: Path,
    migrated_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GunicornServer]:
    env = {
        "APPLIANCE_DATABASE_URL": migrated_database_url,
        "APPLIANCE_VLLM_BASE_URL": "http://127.0.0.1:9",  # nothing listens: not needed here
        "APPLIANCE_VLLM_MAX_RETRIES": "0",
        "APPLIANCE_WORKERS": "1",
        "APPLIANCE_THREADS": "4",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("prom")),
    }
    with run_gunicorn(
        "appliance.wsgi:app",
        pki=dev_pki,
        roles_path=roles_file,
        config=REPO / "appliance" / "gunicorn_conf.py",
        env=env,
    ) as server:
        yield server


def get(
    server: GunicornServer, pki: DevPki, path: str, who: str, **kw: object
) -> requests.Response:
    cert = pki.clients[who].pair
    return requests.get(server.url(path), cert=cert, verify=pki.ca_path, timeout=10, **kw)  # type: ignore[arg-type]


def test_open_endpoint_with_any_verified_certificate(
    dev_pki: DevPki, appliance_server: GunicornServer
) -> None:
    response = get(appliance_server, dev_pki, "/health/live", "norole")
    assert response.status_code == 200
    assert response.headers["X-Request-ID"]


def test_metrics_without_the_role_is_403_json(
    dev_pki: DevPki, appliance_server: GunicornServer
) -> None:
    for who in ("norole", "intake"):
        response = get(appliance_server, dev_pki, "/metrics", who)
        assert response.status_code == 403, who
        error = response.json()["error"]
        assert error["code"] == "forbidden"
        assert error["request_id"] == response.headers["X-Request-ID"]


def test_metrics_with_the_role_is_200(dev_pki: DevPki, appliance_server: GunicornServer) -> None:
    response = get(appliance_server, dev_pki, "/metrics", "prom")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE" in response.text


def test_forged_headers_do_not_grant_the_role(
    dev_pki: DevPki, appliance_server: GunicornServer
) -> None:
    response = get(appliance_server, dev_pki, "/metrics", "norole", headers=FORGED_HEADERS)
    assert response.status_code == 403


def test_refusals_hold_for_the_real_app(dev_pki: DevPki, appliance_server: GunicornServer) -> None:
    assert "certificate required" in refusal(appliance_server, dev_pki.client_context(None))
    revoked = dev_pki.client_context(dev_pki.clients["revoked"])
    assert "certificate revoked" in refusal(appliance_server, revoked)
