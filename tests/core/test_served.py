"""The HTTP contract through the appliance as the quick start runs it (``appliance serve``,
real gunicorn, mutual TLS): metrics from every worker, a 413 the client can read, the Allow
header of a 405, refused handshakes counted and logged."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator

import pytest
import requests

from appliance.settings import Settings
from harness import postgres
from harness.fake_vllm import FakeVllm, running_fake_vllm
from harness.stack import CLIENT_URI, Stack, appliance_stack
from harness.tls import DevPki
from tests.identity.clients import refusal

MAX_TEXT_BYTES = 4096


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeVllm]:
    with running_fake_vllm() as fake:
        yield fake


@pytest.fixture(scope="module")
def stack(
    create_database: Callable[..., str], upstream: FakeVllm, logins: postgres.Logins
) -> Iterator[Stack]:
    env = {
        "APPLIANCE_MAX_TEXT_BYTES": str(MAX_TEXT_BYTES),
        "APPLIANCE_WORKERS": "2",
        "APPLIANCE_MODEL_COSTS": json.dumps(
            {Settings().vllm_model: {"hourly": 3.0, "tokens_per_second": 2000}}
        ),
    }
    with appliance_stack(create_database(), upstream.endpoint, logins, extra_env=env) as running:
        running.wait_started()
        yield running


def session(stack: Stack) -> requests.Session:
    client = requests.Session()
    client.cert = stack.client_cert.pair
    return client


def test_metrics_show_every_worker_s_series_and_pass_promtool(stack: Stack) -> None:
    """The quick start sets no PROMETHEUS_MULTIPROC_DIR: the page must still merge the workers'
    request, classification, upstream, token and cost series (before, it showed none of them),
    and the scrape-time review queue size. (Quota denials: tests/usage/test_quotas_served.py.)"""
    client = session(stack)
    for n in range(4):  # with two workers, some land on each
        answer = client.post(
            stack.server.url("/api/v1/classify-document"),
            json={"document_id": f"m-{n}", "text": f"Invoice {n} for services."},
            verify=stack.pki.ca_path,
        )
        assert answer.status_code == 200, answer.text
    page = client.get(stack.server.url("/metrics"), verify=stack.pki.ca_path).text
    for series in (
        'appliance_http_requests_total{method="POST",route="/api/v1/classify-document"',
        "appliance_classifications_total{",
        "appliance_upstream_request_duration_seconds_count{",
        'appliance_model_tokens_total{kind="prompt",model=',
        'appliance_model_tokens_total{kind="completion",model=',
        "appliance_model_cost_total{model=",
        "appliance_classification_cache_misses_total ",
        "appliance_review_queue_size ",
    ):
        assert series in page, series
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install scripts/system-packages.txt"
    checked = subprocess.run([promtool, "check", "metrics"], input=page, capture_output=True,
                             text=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_body_over_the_limit_is_a_413_the_client_reads(stack: Stack) -> None:
    """requests sends the whole body before reading: the server must not reset the connection
    under it (before: ConnectionError instead of the 413)."""
    body = {"document_id": "big", "text": "x" * 5_000_000}
    answer = session(stack).post(
        stack.server.url("/api/v1/classify-document"), json=body, verify=stack.pki.ca_path
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"


def test_a_405_names_the_allowed_methods(stack: Stack) -> None:
    answer = session(stack).get(
        stack.server.url("/api/v1/classify-document"), verify=stack.pki.ca_path
    )
    assert answer.status_code == 405
    assert answer.headers["Allow"] == "OPTIONS, POST"
    assert answer.json()["error"]["code"] == "method_not_allowed"


def _handshake_failures(page: str) -> dict[str, float]:
    prefix = "appliance_tls_handshake_failures_total{"
    counts = {}
    for line in page.splitlines():
        if line.startswith(prefix):
            labels, value = line[len(prefix) :].split("} ")
            counts[labels.removeprefix('reason="').removesuffix('"')] = float(value)
    return counts


def test_refused_handshakes_are_counted_and_logged_by_reason(stack: Stack) -> None:
    """A revoked, an expired and a foreign certificate, and none at all: each refused at the
    handshake, each a counted reason and a structured log line (before: invisible)."""
    gone = stack.pki.client("gone", f"URI:{CLIENT_URI}")
    stack.pki.ca.revoke(name="gone")  # rewrites the CRL; new connections use it
    expired = stack.pki.client("old", f"URI:{CLIENT_URI}", expired=True)
    foreign = DevPki.create(stack.pki.directory.parent / "foreign").client("x", f"URI:{CLIENT_URI}")
    knocks = {"revoked": gone, "expired": expired, "unknown_ca": foreign, "no_certificate": None}
    before, logged_before = _failures_and_log(stack)
    for cert in knocks.values():
        refusal(stack.server, stack.pki.client_context(cert))
    after, logged = _failures_and_log(stack)
    counted = {reason: count - before.get(reason, 0) for reason, count in after.items()}
    assert {reason: n for reason, n in counted.items() if n} == dict.fromkeys(knocks, 1.0)
    new = logged[len(logged_before) :]
    assert sorted(entry["reason"] for entry in new) == sorted(knocks)
    assert all(entry["peer"] == "127.0.0.1" and entry["level"] == "WARNING" for entry in new)


def _failures_and_log(stack: Stack) -> tuple[dict[str, float], list[dict[str, object]]]:
    """Handshake failures on the metrics page, and their log lines so far."""
    page = session(stack).get(stack.server.url("/metrics"), verify=stack.pki.ca_path).text
    lines = stack.server.log().splitlines()
    logged = [json.loads(line) for line in lines if "tls_handshake" in line]
    return _handshake_failures(page), logged
