"""Request metrics: bounded labels whatever the caller sends, and the status counted is the
one answered (after the audit hook, which may turn a response into a 503)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from appliance.audit_bridge.interfaces import AuditEvent, AuditReceipt
from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY, ROLES
from appliance.settings import Settings
from harness.identity import identity
from tests.common.apps import app_over
from tests.common.doubles import RecordingSink


def count(route: str, method: str, status: str) -> float:
    labels = {"route": route, "method": method, "status": status}
    return REGISTRY.get_sample_value("appliance_http_requests_total", labels) or 0.0


def test_invented_methods_do_not_become_labels(client: FlaskClient) -> None:
    before = count("unmatched", "other", "405")
    for method in ("FOOBAR", "BREW", "X" * 40):
        assert client.open("/api/v1/classify-document", method=method).status_code == 405
    assert count("unmatched", "other", "405") == before + 3
    methods = {
        sample.labels["method"]
        for metric in REGISTRY.collect()
        if metric.name == "appliance_http_requests"
        for sample in metric.samples
    }
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}


class RefusingSink(RecordingSink):
    """Records events of classifications, refuses the request hook's."""

    def record_standalone(self, event: AuditEvent) -> AuditReceipt:
        raise RuntimeError("audit store refused the event")


@pytest.fixture
def refusing_client(make_settings: Callable[..., Settings]) -> Iterator[FlaskClient]:
    with app_over(make_settings(), audit_sink=RefusingSink()) as app:
        test_client = app.test_client()
        test_client.environ_base[IDENTITY_ENVIRON_KEY] = identity(*ROLES)
        yield test_client


def test_a_request_failed_by_its_audit_write_is_counted_as_503(
    refusing_client: FlaskClient,
) -> None:
    route = "/api/v1/review-queue"
    before: dict[str, Any] = {s: count(route, "GET", s) for s in ("200", "503")}
    response = refusing_client.get(route)
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert count(route, "GET", "503") == before["503"] + 1
    assert count(route, "GET", "200") == before["200"]
