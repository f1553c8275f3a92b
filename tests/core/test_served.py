"""The HTTP contract through the appliance as the quick start runs it (``appliance serve``,
real gunicorn, mutual TLS): metrics from every worker, a 413 the client can read, the Allow
header of a 405."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator

import pytest
import requests

from harness import postgres
from harness.fake_vllm import FakeVllm, running_fake_vllm
from harness.stack import Stack, appliance_stack

MAX_TEXT_BYTES = 4096


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeVllm]:
    with running_fake_vllm() as fake:
        yield fake


@pytest.fixture(scope="module")
def stack(
    create_database: Callable[..., str], upstream: FakeVllm, logins: postgres.Logins
) -> Iterator[Stack]:
    env = {"APPLIANCE_MAX_TEXT_BYTES": str(MAX_TEXT_BYTES), "APPLIANCE_WORKERS": "2"}
    with appliance_stack(create_database(), upstream.url, logins, extra_env=env) as running:
        running.wait_started()
        yield running


def session(stack: Stack) -> requests.Session:
    client = requests.Session()
    client.cert = stack.client_cert.pair
    return client


def test_metrics_show_every_worker_s_series_and_pass_promtool(stack: Stack) -> None:
    """The quick start sets no PROMETHEUS_MULTIPROC_DIR: the page must still merge the workers'
    request, classification and upstream series (before, it showed none of them)."""
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
