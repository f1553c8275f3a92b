"""A client of a running appliance, for the commands that talk to one (``eval``/``classify
--service``, ``jobs``): light to import."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass(frozen=True)
class ServiceConfig:
    url: str
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    timeout_s: float = 120.0


def service_client(config: ServiceConfig, max_connections: int = 16) -> httpx.Client:
    """An HTTP client of the appliance at ``config.url``: mutual TLS with the client
    certificate, the service verified against ``config.ca`` (or plain HTTP for ``http://``)."""
    verify: ssl.SSLContext | bool = True
    if config.url.startswith("https://"):
        verify = ssl.create_default_context(cafile=str(config.ca) if config.ca else None)
        if config.cert is not None:
            verify.load_cert_chain(str(config.cert), str(config.key) if config.key else None)
    return httpx.Client(
        base_url=config.url,
        verify=verify,
        timeout=config.timeout_s,
        limits=httpx.Limits(max_connections=max_connections),
    )
