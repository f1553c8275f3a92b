"""Role table parsing and matching, and certificate facts from DER (no network)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from appliance.identity.peercert import CertFacts, facts_from_der, identity_from_der
from appliance.identity.roles import RoleConfigError, load_role_map, parse_role_table
from appliance.pki import DevCA

TABLE = """\
version: 1
rules:
  - uri: "spiffe://hospital/svc/intake"
    roles: [classifier]
  - uri: "spiffe://hospital/team/*"
    roles: [reader]
  - dns: "*.monitoring.hospital.internal"
    roles: [metrics]
  - email: "*@records.hospital.example"
    roles: [reviewer, reader]
    description: medical records staff
  - cn: "auditor-??"
    roles: [auditor]
"""


def facts(*sans: str, cn: str | None = "svc") -> CertFacts:
    return CertFacts(
        subject=f"CN={cn}",
        issuer="CN=Test CA",
        common_name=cn,
        sans=sans,
        serial="1",
        fingerprint_sha256="00",
        not_after=datetime.now(UTC) + timedelta(days=1),
    )


@pytest.mark.parametrize(
    ("cert", "roles"),
    [
        (facts("URI:spiffe://hospital/svc/intake"), {"classifier"}),
        (facts("URI:spiffe://hospital/svc/intake/x"), set()),
        (facts("URI:spiffe://hospital/svc/INTAKE"), set()),
        (facts("URI:spiffe://hospital/team/cardio"), {"reader"}),
        (facts("URI:spiffe://hospital/team/cardio/extra"), set()),
        (facts("URI:spiffe://hospital/team/"), set()),
        (facts("DNS:prom.monitoring.hospital.internal"), {"metrics"}),
        (facts("DNS:PROM.Monitoring.hospital.internal"), {"metrics"}),
        (facts("DNS:a.b.monitoring.hospital.internal"), set()),
        (facts("DNS:monitoring.hospital.internal"), set()),
        (facts("email:jane@records.hospital.example"), {"reviewer", "reader"}),
        (facts("email:jane@evil.example@records.hospital.example"), set()),
        (facts(cn="auditor-01"), {"auditor"}),
        (facts(cn="auditor-001"), set()),
        (
            facts("URI:spiffe://hospital/svc/intake", "email:j@records.hospital.example"),
            {"classifier", "reviewer", "reader"},
        ),
        (facts("URI:spiffe://hospital/svc/intake-evil"), set()),
        (facts(cn=None), set()),
        # a CN that looks like a SAN grants nothing: rules match the field they name
        (facts(cn="spiffe://hospital/svc/intake"), set()),
    ],
)
def test_matching_is_exact_or_segment_glob_and_default_deny(
    cert: CertFacts, roles: set[str]
) -> None:
    assert parse_role_table(TABLE).roles_for(cert) == frozenset(roles)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 1\nrules:\n  - uri: a\n    roles: [superuser]\n", "unknown roles"),
        ("version: 1\nrules:\n  - uri: a\n    cn: b\n    roles: [reader]\n", "exactly one"),
        ("version: 1\nrules:\n  - roles: [reader]\n", "exactly one"),
        ("version: 1\nrules:\n  - uri: a\n    roles: []\n", "roles"),
        ("version: 1\nrules:\n  - uri: a\n    role: [reader]\n", "role"),
        ("version: 2\nrules: []\n", "version"),
        ("rules: [\n", "not valid YAML"),
        ("- just a list\n", "not a valid role table"),
    ],
)
def test_invalid_tables_are_rejected(text: str, message: str) -> None:
    with pytest.raises(RoleConfigError, match=message):
        parse_role_table(text)


def test_load_role_map(tmp_path: Path) -> None:
    assert load_role_map(None).roles_for(facts("URI:spiffe://hospital/svc/intake")) == frozenset()
    path = tmp_path / "roles.yaml"
    path.write_text(TABLE)
    assert load_role_map(path).roles_for(facts(cn="auditor-07")) == {"auditor"}
    with pytest.raises(RoleConfigError, match="cannot read"):
        load_role_map(tmp_path / "missing.yaml")


def test_identity_from_der(tmp_path: Path) -> None:
    ca = DevCA.init(tmp_path)
    issued = ca.issue_client(
        "intake", ("URI:spiffe://hospital/svc/intake", "DNS:intake.hospital", "email:ops@h.example")
    )
    cert = x509.load_pem_x509_certificate(issued.cert_path.read_bytes())
    der = cert.public_bytes(serialization.Encoding.DER)
    facts_ = facts_from_der(der)
    assert facts_.common_name == "intake"
    identity = identity_from_der(der, parse_role_table(TABLE).roles_for)
    assert identity.subject == "CN=intake"
    assert identity.sans == (
        "URI:spiffe://hospital/svc/intake",
        "DNS:intake.hospital",
        "email:ops@h.example",
    )
    assert identity.serial == f"{issued.serial:x}"
    assert identity.fingerprint_sha256 == hashlib.sha256(der).hexdigest()
    assert identity.not_after == issued.not_after
    assert identity.roles == {"classifier"}
    assert identity.name == "spiffe://hospital/svc/intake"
