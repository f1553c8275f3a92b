"""Pure certificate and CRL construction with ``cryptography`` (no files, no clock of its own).

Keys are ECDSA P-256, signatures SHA-256. Every function takes the validity window explicitly so
callers (and tests) can build expired certificates and CRLs.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.pki.errors import InvalidRequestError

SAN_PREFIXES = ("URI:", "DNS:", "email:", "IP:")


@dataclass(frozen=True)
class Validity:
    """A certificate's or CRL's validity window, both ends timezone-aware UTC."""

    not_before: datetime
    not_after: datetime

    def __post_init__(self) -> None:
        if self.not_before.tzinfo is None or self.not_after.tzinfo is None:
            raise InvalidRequestError("validity bounds must be timezone-aware")
        if self.not_after <= self.not_before:
            raise InvalidRequestError(
                f"not_after must follow not_before: got {self.not_before} .. {self.not_after}"
            )


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def new_serial() -> int:
    """A random positive 159-bit serial (RFC 5280 allows at most 20 octets)."""
    return secrets.randbits(159) | 1 << 158


def parse_san(text: str) -> x509.GeneralName:
    """Parse ``URI:spiffe://hospital/svc/x``, ``DNS:host``, ``email:a@b`` or ``IP:10.0.0.1``."""
    kind, sep, value = text.partition(":")
    if not sep or not value:
        raise InvalidRequestError(
            f"SAN must look like KIND:VALUE with KIND in {SAN_PREFIXES}, got {text!r}"
        )
    if kind == "URI":
        return x509.UniformResourceIdentifier(value)
    if kind == "DNS":
        return x509.DNSName(value)
    if kind == "email":
        return x509.RFC822Name(value)
    if kind == "IP":
        try:
            return x509.IPAddress(ipaddress.ip_address(value))
        except ValueError as exc:
            raise InvalidRequestError(f"SAN IP must be an IP address, got {value!r}") from exc
    raise InvalidRequestError(f"SAN kind must be one of {SAN_PREFIXES}, got {kind!r} in {text!r}")


def build_ca(
    key: ec.EllipticCurvePrivateKey, common_name: str, validity: Validity
) -> x509.Certificate:
    """A self-signed CA that may sign end-entity certificates and CRLs only (path length 0)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(new_serial())
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def build_leaf(
    *,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    common_name: str,
    sans: list[x509.GeneralName],
    server: bool,
    validity: Validity,
) -> x509.Certificate:
    """An end-entity certificate for TLS server (``server=True``) or client authentication."""
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(new_serial())
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_id(ca_cert), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def build_crl(
    *,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    revoked: list[tuple[int, datetime]],
    crl_number: int,
    validity: Validity,
) -> x509.CertificateRevocationList:
    """A CRL listing ``(serial, revocation_time)`` pairs; ``validity`` is lastUpdate..nextUpdate."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(validity.not_before)
        .next_update(validity.not_after)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(_authority_key_id(ca_cert), critical=False)
    )
    for serial, when in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(ca_key, hashes.SHA256())


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
