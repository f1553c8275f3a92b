"""The real CPU vLLM as production serves it: TLS, client certificates required, an API key.

The end-to-end tests classify through it (``VllmEndpoint.env``); these check that each of the
three locks holds on its own, and that the appliance's client answers a failed one as "model
server unavailable" (503), never as a bad answer or a crash.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import pytest

from appliance.backends.vllm_client import VllmClient, VllmConfig
from appliance.errors import UpstreamUnavailable
from harness import vllm_cpu
from harness.tls import DevPki
from harness.upstream import VllmEndpoint

pytestmark = pytest.mark.vllm

CHAT = {
    "model": vllm_cpu.MODEL_NAME,
    "messages": [{"role": "user", "content": "Laboratory report, potassium 4.1 mmol/L."}],
    "max_tokens": 1,
}


@pytest.fixture(scope="module")
def secured(vllm_server: VllmEndpoint) -> VllmEndpoint:
    if vllm_server.pki is None or vllm_server.api_key_file is None:
        pytest.skip("APPLIANCE_TEST_VLLM_URL names a server without the test's TLS and key")
    return vllm_server


def api_key(endpoint: VllmEndpoint) -> str:
    assert endpoint.api_key_file is not None
    return endpoint.api_key_file.read_text().strip()


def client_for(endpoint: VllmEndpoint, **changes: object) -> VllmClient:
    """The appliance's own client, configured from the endpoint's settings, then ``changes``."""
    assert endpoint.pki is not None and endpoint.client is not None
    config = VllmConfig(
        base_url=endpoint.url, model=vllm_cpu.MODEL_NAME, api_key=api_key(endpoint),
        ca_file=Path(endpoint.pki.ca_path), cert_file=Path(endpoint.client.pair[0]),
        key_file=Path(endpoint.client.pair[1]), max_retries=0,
    )
    return VllmClient(dataclasses.replace(config, **changes))  # type: ignore[arg-type]


def test_the_appliance_client_gets_through_all_three(secured: VllmEndpoint) -> None:
    client = client_for(secured)
    try:
        assert client.is_healthy()
        assert client.chat({"messages": CHAT["messages"], "max_tokens": 1})["choices"]
        assert client.tokenize("potassium") != []
    finally:
        client.close()


def test_plain_http_is_not_served(secured: VllmEndpoint) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(secured.url.replace("https://", "http://") + "/health", timeout=5)


def test_a_client_without_a_certificate_is_refused(secured: VllmEndpoint) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.post(
            secured.url + "/tokenize", json={"prompt": "potassium"}, timeout=5,
            verify=secured.ssl_context(with_client_cert=False),
        )


def test_a_client_without_the_api_key_is_refused(secured: VllmEndpoint) -> None:
    context = secured.ssl_context()
    missing = httpx.post(secured.url + "/v1/chat/completions", json=CHAT, timeout=30,
                         verify=context)
    wrong = httpx.post(secured.url + "/v1/chat/completions", json=CHAT, timeout=30,
                       verify=context, headers={"Authorization": "Bearer not-the-key"})
    right = httpx.post(secured.url + "/v1/chat/completions", json=CHAT, timeout=120,
                       verify=context, headers={"Authorization": f"Bearer {api_key(secured)}"})
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)


def test_a_wrong_api_key_is_model_server_unavailable(secured: VllmEndpoint) -> None:
    client = client_for(secured, api_key="not-the-key")
    try:
        with pytest.raises(UpstreamUnavailable, match="API key"):
            client.chat({"messages": CHAT["messages"], "max_tokens": 1})
    finally:
        client.close()


def test_a_server_the_appliance_does_not_trust_is_refused(
    secured: VllmEndpoint, tmp_path: Path
) -> None:
    """An impostor on vLLM's address (here: the real one, but under a CA the appliance was not
    given) gets no document text: the handshake fails before the request is sent."""
    other_ca = DevPki.create(tmp_path / "other", common_name="Someone else's CA")
    client = client_for(secured, ca_file=Path(other_ca.ca_path))
    try:
        assert not client.is_healthy()
        with pytest.raises(UpstreamUnavailable, match="TLS"):
            client.chat({"messages": CHAT["messages"], "max_tokens": 1})
    finally:
        client.close()
