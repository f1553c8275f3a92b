"""The middleware without a network: what it removes and that it never invents an identity.

The TLS path (a real verified peer certificate) is covered over real gunicorn in test_access.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY, Identity
from appliance.identity.middleware import ClientCertMiddleware, StartResponse
from appliance.identity.roles import parse_role_table
from appliance.identity.tls import RevokedSerials, TlsExpiryCollector
from appliance.pki import DevCA

FORGED = {
    "SSL_CLIENT_S_DN": "CN=admin",
    "SSL_CLIENT_CERT": "pem",
    "SSL_CLIENT_VERIFY": "SUCCESS",
    "HTTP_X_CLIENT_CERT": "pem",
    "HTTP_SSL_CLIENT_S_DN": "CN=admin",
    "HTTP_X_SSL_CLIENT_S_DN": "CN=admin",
    "HTTP_X_FORWARDED_CLIENT_CERT": "URI=spiffe://hospital/svc/intake",
    "HTTP_CLIENT_CERT": ":pem:",
    "HTTP_CLIENT_CERT_CHAIN": ":pem:",
    "HTTP_X_ARR_CLIENTCERT": "pem",
    "REMOTE_USER": "admin",
}
KEPT = {"HTTP_HOST": "localhost", "HTTP_X_REQUEST_ID": "abc", "PATH_INFO": "/", "SERVER_PORT": "1"}


def run(environ: dict[str, Any]) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def app(env: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        seen.update(env)
        start_response("200 OK", [])
        return [b""]

    middleware = ClientCertMiddleware(app, parse_role_table("version: 1\nrules: []\n"))
    middleware(environ, lambda *args: None)
    return seen


def test_forgeable_keys_are_removed_and_others_kept() -> None:
    seen = run({**FORGED, **KEPT})
    assert seen == KEPT


def test_no_tls_socket_means_no_identity_even_if_one_was_planted() -> None:
    planted = Identity("CN=admin", (), "1", "00", datetime.max, frozenset())
    seen = run({**KEPT, IDENTITY_ENVIRON_KEY: planted, "gunicorn.socket": object()})
    assert IDENTITY_ENVIRON_KEY not in seen


def test_revoked_serials_follow_the_crl_file_and_fail_closed(tmp_path: Path) -> None:
    ca = DevCA.init(tmp_path / "a", common_name="CA A")
    other = DevCA.init(tmp_path / "b", common_name="CA B")
    one, two = ca.issue_client("one"), ca.issue_client("two")
    revoked = RevokedSerials(ca.crl_path)
    assert not revoked.is_revoked("CN=CA A", one.serial)

    ca.revoke(name="one")
    assert revoked.is_revoked("CN=CA A", one.serial)
    assert not revoked.is_revoked("CN=CA A", two.serial)
    assert not revoked.is_revoked("CN=CA B", one.serial)  # same serial, other issuer

    bundle = tmp_path / "bundle.pem"  # CRLs of two CAs in one file
    other.issue_client("x")
    [x_serial] = other.revoke(name="x")
    bundle.write_bytes(ca.crl_path.read_bytes() + other.crl_path.read_bytes())
    both = RevokedSerials(bundle)
    assert both.is_revoked("CN=CA A", one.serial)
    assert both.is_revoked("CN=CA B", x_serial)
    assert not both.is_revoked("CN=CA B", one.serial)
    bundle.write_text("garbage")
    assert both.is_revoked("CN=CA A", two.serial)  # unreadable -> everything revoked


@pytest.mark.parametrize("cut", [2, 40, 200])
def test_a_truncated_crl_file_revokes_everything(tmp_path: Path, cut: int) -> None:
    """A half-copied file (its last PEM block cut short) must not read as "none revoked"."""
    ca = DevCA.init(tmp_path / "a", common_name="CA A")
    other = DevCA.init(tmp_path / "b", common_name="CA B")
    fine = ca.issue_client("fine")
    whole = ca.crl_path.read_bytes() + other.crl_path.read_bytes()
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(whole)
    crls = RevokedSerials(bundle)
    assert not crls.is_revoked("CN=CA A", fine.serial)
    bundle.write_bytes(whole[:-cut])
    assert crls.is_revoked("CN=CA A", fine.serial)
    bundle.write_bytes(ca.crl_path.read_bytes()[:-cut])  # one CRL, cut short
    assert crls.is_revoked("CN=CA A", fine.serial)


def test_a_crl_past_its_next_update_revokes_everything(tmp_path: Path) -> None:
    """As OpenSSL refuses new handshakes, so the middleware refuses requests on open ones."""
    ca = DevCA.init(tmp_path, common_name="CA A")
    fine = ca.issue_client("fine")
    now = [datetime.now(UTC)]
    crls = RevokedSerials(ca.crl_path, clock=lambda: now[0])
    assert not crls.is_revoked("CN=CA A", fine.serial)
    now[0] += timedelta(days=8)  # the dev CA's CRL is valid for 7 days
    assert crls.is_revoked("CN=CA A", fine.serial)


def test_tls_expiry_collector(tmp_path: Path) -> None:
    ca = DevCA.init(tmp_path)
    server = ca.issue_server()
    registry = CollectorRegistry()
    registry.register(TlsExpiryCollector(server.cert_path, ca.crl_path))
    cert_value = registry.get_sample_value("appliance_tls_server_cert_not_after_timestamp_seconds")
    assert cert_value == server.not_after.timestamp()
    crl_value = registry.get_sample_value("appliance_tls_crl_next_update_timestamp_seconds")
    assert crl_value is not None and crl_value > datetime.now().timestamp()
    ca.crl_path.write_text("garbage")
    assert registry.get_sample_value("appliance_tls_crl_next_update_timestamp_seconds") == 0.0
