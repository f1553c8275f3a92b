"""Settings that fail closed: the vLLM transport rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from appliance.settings import Settings


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000",
            "https://vllm.site-a.example:8000"],
)
def test_loopback_http_and_any_https_are_accepted(url: str) -> None:
    assert Settings(vllm_base_url=url).vllm_base_url == url


@pytest.mark.parametrize("url", ["http://vllm:8000", "http://10.10.2.11:8000"])
def test_plain_http_across_the_network_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="unencrypted"):
        Settings(vllm_base_url=url)


def test_plain_http_across_the_network_only_when_allowed_explicitly() -> None:
    settings = Settings(vllm_base_url="http://vllm:8000", vllm_allow_plaintext=True)
    assert settings.vllm_allow_plaintext


def test_a_client_certificate_needs_its_key(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="together"):
        Settings(vllm_base_url="https://vllm:8000", vllm_tls_cert=tmp_path / "c.pem")


def test_the_api_key_comes_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "vllm-api-key"
    key_file.write_text("s3cret-key\n")
    monkeypatch.setenv("APPLIANCE_VLLM_API_KEY_FILE", str(key_file))
    assert Settings().vllm_api_key == "s3cret-key"
