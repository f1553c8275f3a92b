"""Where the appliance finds its model server in tests: the URL and what lets it in."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from harness.tls import ClientCert, DevPki


@dataclass(frozen=True)
class VllmEndpoint:
    """A running vLLM server and what a client needs to be let in."""

    url: str
    pki: DevPki | None = None
    client: ClientCert | None = None
    api_key_file: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        """The appliance's ``APPLIANCE_VLLM_*`` settings for this server."""
        env = {"APPLIANCE_VLLM_BASE_URL": self.url}
        if self.pki is not None and self.client is not None:
            env |= {
                "APPLIANCE_VLLM_TLS_CA": self.pki.ca_path,
                "APPLIANCE_VLLM_TLS_CERT": self.client.pair[0],
                "APPLIANCE_VLLM_TLS_KEY": self.client.pair[1],
            }
        if self.api_key_file is not None:
            env["APPLIANCE_VLLM_API_KEY_FILE"] = str(self.api_key_file)
        return env

    def ssl_context(self, *, with_client_cert: bool = True) -> ssl.SSLContext | bool:
        """For httpx's ``verify=``: trusts the server; presents the client certificate."""
        if self.pki is None:
            return True
        return self.pki.client_context(self.client if with_client_cert else None)
