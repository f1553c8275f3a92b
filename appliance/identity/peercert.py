"""The verified peer certificate (DER) as certificate facts and as an ``Identity``.

Only call this with the certificate the TLS stack verified during the handshake; the parsing here
checks nothing about trust.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

from appliance.identity.interfaces import Identity, RuleQuota


@dataclass(frozen=True)
class CertFacts:
    """What role rules may match on, read from one certificate."""

    subject: str
    issuer: str
    common_name: str | None
    sans: tuple[str, ...]
    serial: str
    fingerprint_sha256: str
    not_after: datetime

    def san_values(self, prefix: str) -> tuple[str, ...]:
        """SAN values of one kind: ``san_values("URI:")`` -> ``("spiffe://...",)``."""
        return tuple(san.removeprefix(prefix) for san in self.sans if san.startswith(prefix))


def facts_from_der(der: bytes) -> CertFacts:
    """Parse a DER certificate; raises ``ValueError`` if it is not one."""
    cert = x509.load_der_x509_certificate(der)
    common_names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = common_names[0].value if common_names else None
    return CertFacts(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        common_name=common_name if isinstance(common_name, str) else None,
        sans=_sans(cert),
        serial=f"{cert.serial_number:x}",
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        not_after=cert.not_valid_after_utc,
    )


def identity_from_facts(
    facts: CertFacts, roles: frozenset[str], quotas: tuple[RuleQuota, ...] = ()
) -> Identity:
    return Identity(
        subject=facts.subject,
        sans=facts.sans,
        serial=facts.serial,
        fingerprint_sha256=facts.fingerprint_sha256,
        not_after=facts.not_after,
        roles=roles,
        quotas=quotas,
    )


def identity_from_der(der: bytes, roles_for: Callable[[CertFacts], frozenset[str]]) -> Identity:
    """The ``Identity`` of a verified peer certificate, with the roles ``roles_for`` grants."""
    facts = facts_from_der(der)
    return identity_from_facts(facts, roles_for(facts))


def _sans(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    sans: list[str] = []
    sans += [f"URI:{v}" for v in ext.get_values_for_type(x509.UniformResourceIdentifier)]
    sans += [f"DNS:{v}" for v in ext.get_values_for_type(x509.DNSName)]
    sans += [f"email:{v}" for v in ext.get_values_for_type(x509.RFC822Name)]
    sans += [f"IP:{v}" for v in ext.get_values_for_type(x509.IPAddress)]
    return tuple(sans)
