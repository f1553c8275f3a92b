"""The gunicorn TLS settings: values, start-up checks that fail early, and the hardened context."""

from __future__ import annotations

import ssl
from pathlib import Path
from types import SimpleNamespace

import pytest

from appliance.identity.tls import TlsConfigError, gunicorn_tls_settings, tls_settings_from
from appliance.pki import DevCA


@pytest.fixture
def ca(tmp_path: Path) -> DevCA:
    ca = DevCA.init(tmp_path)
    ca.issue_server()
    return ca


def settings(ca: DevCA, **overrides: object) -> SimpleNamespace:
    values: dict[str, object] = {
        "tls_cert": ca.directory / "server.pem",
        "tls_key": ca.directory / "server.key",
        "tls_ca": ca.cert_path,
        "tls_crl": ca.crl_path,
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def test_settings_require_client_certificates_and_harden_the_context(ca: DevCA) -> None:
    conf = tls_settings_from(settings(ca))
    assert conf["cert_reqs"] == ssl.CERT_REQUIRED
    assert int(conf["cert_reqs"]) == 2  # True would mean "optional"
    assert conf["ca_certs"] == str(ca.cert_path)

    def factory() -> ssl.SSLContext:  # what gunicorn's default factory builds
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=conf["ca_certs"])
        context.load_cert_chain(conf["certfile"], conf["keyfile"])
        context.verify_mode = ssl.CERT_OPTIONAL  # the hook must not trust this
        return context

    gconf = SimpleNamespace(**conf)
    context = conf["ssl_context"](gconf, factory)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert conf["ssl_context"](gconf, factory) is context  # cached while files are unchanged
    ca.write_crl()
    assert conf["ssl_context"](gconf, factory) is not context  # rebuilt after a CRL change


@pytest.mark.parametrize("missing", ["tls_cert", "tls_key", "tls_ca"])
def test_missing_files_are_named(ca: DevCA, missing: str) -> None:
    with pytest.raises(TlsConfigError, match=f"APPLIANCE_{missing.upper()}"):
        tls_settings_from(settings(ca, **{missing: None}))


def test_unusable_files_fail_at_start_up(ca: DevCA, tmp_path: Path) -> None:
    other = DevCA.init(tmp_path / "other")
    other.issue_server()
    with pytest.raises(TlsConfigError, match="unusable"):  # key of another certificate
        gunicorn_tls_settings(
            cert=ca.directory / "server.pem",
            key=other.directory / "server.key",
            ca=ca.cert_path,
            crl=ca.crl_path,
        )
    broken = tmp_path / "broken.pem"
    broken.write_text("not a crl")
    with pytest.raises(TlsConfigError, match="unusable"):
        gunicorn_tls_settings(
            cert=ca.directory / "server.pem",
            key=ca.directory / "server.key",
            ca=ca.cert_path,
            crl=broken,
        )
