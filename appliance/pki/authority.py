"""A development CA kept in one directory of PEM files.

Layout of the directory::

    ca.pem  ca.key          the CA (key mode 0600)
    crl.pem                 the current CRL, rewritten on every revocation
    <name>.pem  <name>.key  issued server and client certificates (keys 0600)
    index.json              what was issued and revoked, and the last CRL number

Every file is written to a temporary name and renamed into place, so a reader (gunicorn building
its TLS context for a new connection) never sees half a file.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.pki import builders
from appliance.pki.builders import Validity
from appliance.pki.errors import InvalidRequestError, PkiStateError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
RESERVED_NAMES = frozenset({"ca", "crl", "index"})
DEFAULT_SERVER_SANS = ("DNS:localhost", "IP:127.0.0.1")
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Issued:
    """Where an issued certificate and its key were written."""

    name: str
    cert_path: Path
    key_path: Path
    serial: int
    not_after: datetime


def validity(days: int, *, expired: bool = False, now: datetime | None = None) -> Validity:
    """``days`` from now (backdated by a little clock skew), or a window that ended yesterday."""
    now = now or datetime.now(UTC)
    if expired:
        return Validity(now - timedelta(days=2), now - timedelta(days=1))
    if days < 1:
        raise InvalidRequestError(f"validity must be at least 1 day, got {days}")
    return Validity(now - CLOCK_SKEW, now + timedelta(days=days))


class DevCA:
    """The CA in ``directory``; create it with :meth:`init`, open it with :meth:`load`."""

    def __init__(self, directory: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate):
        self.directory = directory
        self.key = key
        self.cert = cert

    @property
    def cert_path(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def crl_path(self) -> Path:
        return self.directory / "crl.pem"

    @classmethod
    def init(
        cls,
        directory: Path,
        *,
        common_name: str = "Appliance Dev CA",
        days: int = 3650,
        force: bool = False,
    ) -> DevCA:
        """Create a new CA and an empty CRL. Refuses to replace an existing CA unless ``force``."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if (directory / "ca.key").exists() and not force:
            raise PkiStateError(f"a CA already exists in {directory}; pass force to replace it")
        key = builders.new_key()
        cert = builders.build_ca(key, common_name, validity(days))
        ca = cls(directory, key, cert)
        _write_key(directory / "ca.key", key)
        _write_public(ca.cert_path, cert.public_bytes(serialization.Encoding.PEM))
        ca._save_index({"crl_number": 0, "certs": []})
        ca.write_crl()
        return ca

    @classmethod
    def load(cls, directory: Path) -> DevCA:
        try:
            key_pem = (directory / "ca.key").read_bytes()
            cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
        except FileNotFoundError as exc:
            raise PkiStateError(f"no CA in {directory}: run `appliance pki init` first") from exc
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiStateError(f"{directory / 'ca.key'} is not an EC private key")
        return cls(directory, key, cert)

    def issue_server(
        self,
        name: str = "server",
        sans: tuple[str, ...] = DEFAULT_SERVER_SANS,
        *,
        days: int = 397,
        expired: bool = False,
    ) -> Issued:
        """A TLS server certificate; ``sans`` defaults to localhost and 127.0.0.1."""
        if not sans:
            raise InvalidRequestError("a server certificate needs at least one SAN")
        return self._issue(name, sans, server=True, window=validity(days, expired=expired))

    def issue_client(
        self, name: str, sans: tuple[str, ...] = (), *, days: int = 365, expired: bool = False
    ) -> Issued:
        """A TLS client certificate with CN ``name`` and the given SANs."""
        return self._issue(name, sans, server=False, window=validity(days, expired=expired))

    def revoke(self, *, name: str | None = None, serial: int | None = None) -> list[int]:
        """Revoke every unrevoked certificate with that name or serial; rewrite the CRL."""
        if (name is None) == (serial is None):
            raise InvalidRequestError("give exactly one of name or serial")
        index = self._load_index()
        now = datetime.now(UTC)
        hits = [
            entry
            for entry in index["certs"]
            if entry["revoked_at"] is None
            and (entry["name"] == name if name is not None else int(entry["serial"], 16) == serial)
        ]
        if not hits:
            raise InvalidRequestError(f"no unrevoked certificate with name={name} serial={serial}")
        for entry in hits:
            entry["revoked_at"] = now.isoformat()
        self._save_index(index)
        self.write_crl()
        return [int(entry["serial"], 16) for entry in hits]

    def write_crl(self, *, days: int = 7, expired: bool = False, out: Path | None = None) -> Path:
        """Sign a fresh CRL of everything revoked so far and write it atomically."""
        index = self._load_index()
        index["crl_number"] += 1
        revoked = [
            (int(e["serial"], 16), datetime.fromisoformat(e["revoked_at"]))
            for e in index["certs"]
            if e["revoked_at"] is not None
        ]
        crl = builders.build_crl(
            ca_key=self.key,
            ca_cert=self.cert,
            revoked=revoked,
            crl_number=index["crl_number"],
            validity=validity(days, expired=expired),
        )
        self._save_index(index)
        path = out or self.crl_path
        _write_public(path, crl.public_bytes(serialization.Encoding.PEM))
        return path

    def _issue(self, name: str, sans: tuple[str, ...], *, server: bool, window: Validity) -> Issued:
        if not NAME_RE.fullmatch(name) or name in RESERVED_NAMES:
            raise InvalidRequestError(
                f"name must match {NAME_RE.pattern} and not be one of {sorted(RESERVED_NAMES)}, "
                f"got {name!r}"
            )
        general_names = [builders.parse_san(san) for san in sans]
        key = builders.new_key()
        cert = builders.build_leaf(
            ca_key=self.key,
            ca_cert=self.cert,
            key=key,
            common_name=name,
            sans=general_names,
            server=server,
            validity=window,
        )
        key_path, cert_path = self.directory / f"{name}.key", self.directory / f"{name}.pem"
        _write_key(key_path, key)
        _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        index = self._load_index()
        index["certs"].append(
            {
                "name": name,
                "serial": f"{cert.serial_number:x}",
                "server": server,
                "not_after": cert.not_valid_after_utc.isoformat(),
                "revoked_at": None,
            }
        )
        self._save_index(index)
        return Issued(name, cert_path, key_path, cert.serial_number, cert.not_valid_after_utc)

    def _load_index(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.directory / "index.json").read_text())
        except FileNotFoundError as exc:
            raise PkiStateError(f"{self.directory / 'index.json'} is missing") from exc
        return data

    def _save_index(self, index: dict[str, Any]) -> None:
        _write_public(self.directory / "index.json", json.dumps(index, indent=2).encode())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _atomic_write(path, pem, 0o600)


def _write_public(path: Path, data: bytes) -> None:
    _atomic_write(path, data, 0o644)


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
