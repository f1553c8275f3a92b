"""The dev PKI through its CLI (click's CliRunner) and library: files, modes, SANs, CRLs."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.cli import cli
from appliance.pki import DevCA, PkiError


def run(directory: Path, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["pki", "--dir", str(directory), *args])
    return result


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(cert: x509.Certificate) -> list[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(v) for v in ext.get_values_for_type(x509.DNSName)] + [
        str(v) for v in ext.get_values_for_type(x509.IPAddress)
    ]


def test_init_issue_revoke_crl_round_trip(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    assert run(d, "init").exit_code == 0
    assert run(d, "issue-server", "--san", "DNS:appliance.hospital.internal").exit_code == 0
    result = run(d, "issue-client", "--name", "intake", "--san", "URI:spiffe://hospital/svc/intake")
    assert result.exit_code == 0, result.output

    for key in ("ca.key", "server.key", "intake.key"):
        assert stat.S_IMODE((d / key).stat().st_mode) == 0o600, key
    ca = load(d / "ca.pem")
    server, client = load(d / "server.pem"), load(d / "intake.pem")
    assert sans(server) == ["localhost", "appliance.hospital.internal", "127.0.0.1"]
    server.verify_directly_issued_by(ca)
    client.verify_directly_issued_by(ca)
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    uri = client.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert uri.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://hospital/svc/intake"
    ]

    crl = x509.load_pem_x509_crl((d / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(client.serial_number) is None
    assert run(d, "revoke", "--name", "intake").exit_code == 0
    crl = x509.load_pem_x509_crl((d / "crl.pem").read_bytes())
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(client.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(server.serial_number) is None


def test_expired_options_and_validity(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    run(d, "init")
    assert run(d, "issue-client", "--name", "old", "--expired").exit_code == 0
    assert run(d, "issue-client", "--name", "short", "--days", "2").exit_code == 0
    now = datetime.now(UTC)
    assert load(d / "old.pem").not_valid_after_utc < now
    assert 1 < (load(d / "short.pem").not_valid_after_utc - now).days + 1 <= 2
    assert run(d, "crl", "--expired").exit_code == 0
    crl = x509.load_pem_x509_crl((d / "crl.pem").read_bytes())
    assert crl.next_update_utc is not None and crl.next_update_utc < now
    run(d, "crl", "--days", "3")
    crl = x509.load_pem_x509_crl((d / "crl.pem").read_bytes())
    assert crl.next_update_utc is not None and crl.next_update_utc > now


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("issue-client", "--name", "../evil"), "name must match"),
        (("issue-client", "--name", "ca"), "name must match"),
        (("issue-client", "--name", "x", "--san", "spiffe://no-kind"), "SAN kind"),
        (("issue-client", "--name", "x", "--san", "IP:not-an-ip"), "SAN IP"),
        (("revoke", "--name", "nobody"), "no unrevoked certificate"),
        (("revoke",), "exactly one of"),
        (("init",), "already exists"),
    ],
)
def test_bad_requests_exit_1_with_a_message(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    run(tmp_path, "init")
    result = run(tmp_path, *args)
    assert result.exit_code == 1
    assert message in result.output


def test_commands_need_an_initialised_directory(tmp_path: Path) -> None:
    result = run(tmp_path / "empty", "issue-server")
    assert result.exit_code == 1 and "run `appliance pki init` first" in result.output
    with pytest.raises(PkiError):
        DevCA.load(tmp_path / "empty")


def test_init_force_replaces_the_ca(tmp_path: Path) -> None:
    first = DevCA.init(tmp_path)
    second = DevCA.init(tmp_path, force=True)
    assert first.cert.serial_number != second.cert.serial_number
