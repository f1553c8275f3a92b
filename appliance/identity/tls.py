"""gunicorn TLS settings: client certificate required, TLS 1.2 minimum, CRL checked at handshake.

When gunicorn builds the SSL context (read from gunicorn 27 ``sock.py`` and ``workers/``): the sync
and gthread workers call ``ssl_context(conf)`` -- and so our ``ssl_context`` hook -- for EVERY new
connection, just before the handshake; gevent/tornado/asgi workers build one context per worker.
The hook below caches the context and rebuilds it when the certificate, key, CA bundle or CRL file
changes on disk (inode, size, mtime), so under sync/gthread workers a replaced file takes effect
for the next new connection with no restart and no dropped request. Connections already open
(keep-alive) keep the identity verified at their handshake. A graceful ``kill -HUP`` of the
master replaces the workers and also picks everything up (and is required for other worker types).

Replace files atomically (write a temporary file, then rename): a half-written file makes new
handshakes fail (fail closed) until the file is whole.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from threading import Lock
from typing import Any, Protocol

from cryptography import x509
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from appliance.identity.handshakes import ObservedSSLSocket

log = logging.getLogger(__name__)

TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"

FileStamp = tuple[int, int, int, int] | None


class TlsConfigError(ValueError):
    """The TLS files are incomplete, unreadable or do not make a working server context."""


class TlsPaths(Protocol):
    """What ``tls_settings_from`` reads (``appliance.settings.Settings`` has these fields)."""

    @property
    def tls_cert(self) -> Path | None: ...
    @property
    def tls_key(self) -> Path | None: ...
    @property
    def tls_ca(self) -> Path | None: ...
    @property
    def tls_crl(self) -> Path | None: ...


def harden(context: ssl.SSLContext, crl: Path | None) -> ssl.SSLContext:
    """Client certificate required, TLS >= 1.2, no renegotiation, CRL checked for the leaf,
    failed handshakes counted and logged (``appliance.identity.handshakes``)."""
    context.sslsocket_class = ObservedSSLSocket
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_ciphers(TLS12_CIPHERS)  # TLS 1.2 only; TLS 1.3 suites stay OpenSSL's defaults
    if crl is not None:
        context.load_verify_locations(cafile=str(crl))
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return context


class CachedContextHook:
    """gunicorn's ``ssl_context(conf, default_ssl_context_factory)`` hook (see the module doc)."""

    def __init__(self, crl: Path | None) -> None:
        self.crl = crl
        self._lock = Lock()
        self._stamp: tuple[FileStamp, ...] | None = None
        self._context: ssl.SSLContext | None = None

    def __call__(
        self, conf: Any, default_ssl_context_factory: Callable[[], ssl.SSLContext]
    ) -> ssl.SSLContext:
        paths = (conf.certfile, conf.keyfile, conf.ca_certs, self.crl)
        stamp = tuple(_stamp(path) for path in paths)
        with self._lock:
            if self._context is None or stamp != self._stamp:
                try:
                    context = harden(default_ssl_context_factory(), self.crl)
                except (OSError, ssl.SSLError) as exc:
                    log.error("TLS files unusable, refusing new connections: %s", exc)
                    raise
                if self._context is not None:
                    log.info("TLS files changed on disk; new connections use the new context")
                self._context, self._stamp = context, stamp
            return self._context


def gunicorn_tls_settings(*, cert: Path, key: Path, ca: Path, crl: Path | None) -> dict[str, Any]:
    """Settings for a gunicorn config module; builds one context now to fail early.

    Raises ``TlsConfigError`` when the files do not make a working server context.
    """
    try:
        harden(_default_factory(cert, key, ca)(), crl)
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(
            f"TLS files cert={cert} key={key} ca={ca} crl={crl} are unusable: {exc}"
        ) from exc
    if crl is None:
        log.warning("no CRL configured (APPLIANCE_TLS_CRL): revoked client certificates pass")
    else:
        next_update = crl_next_update(crl)
        if next_update is not None and next_update <= datetime.now(UTC):
            log.error("CRL %s expired at %s: every client will be refused", crl, next_update)
    return {
        "certfile": str(cert),
        "keyfile": str(key),
        "ca_certs": str(ca),
        "cert_reqs": ssl.CERT_REQUIRED,
        "ssl_context": CachedContextHook(crl),
    }


def tls_settings_from(settings: TlsPaths) -> dict[str, Any]:
    """``gunicorn_tls_settings`` from the appliance settings; all of cert, key, ca are required."""
    missing = [
        f"APPLIANCE_{name.upper()}"
        for name in ("tls_cert", "tls_key", "tls_ca")
        if getattr(settings, name) is None
    ]
    if missing:
        raise TlsConfigError(f"mutual TLS needs {', '.join(missing)}")
    assert settings.tls_cert and settings.tls_key and settings.tls_ca  # for mypy
    return gunicorn_tls_settings(
        cert=settings.tls_cert, key=settings.tls_key, ca=settings.tls_ca, crl=settings.tls_crl
    )


class RevokedSerials:
    """``(issuer, serial)`` pairs listed in a CRL file, re-read when the file changes.

    The handshake checks the CRL only when a connection opens; the middleware asks this object on
    every request so that a keep-alive connection opened before a revocation loses its identity
    from its next request on. Fails closed, as OpenSSL does at the handshake: a file that is
    unreadable, truncated or holds a CRL past its nextUpdate counts every certificate revoked.
    """

    def __init__(self, crl: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.crl = crl
        self._clock = clock
        self._lock = Lock()
        self._stamp: FileStamp = None
        self._list: RevocationList | None = None

    def is_revoked(self, issuer: str, serial: int) -> bool:
        try:
            stamp = _stamp(self.crl)
            with self._lock:
                if self._list is None or stamp != self._stamp:
                    self._list, self._stamp = read_revocation_list(self.crl), stamp
                revocations = self._list
        except (OSError, ValueError) as exc:
            log.error("CRL %s unreadable, treating every certificate as revoked: %s", self.crl, exc)
            return True
        if revocations.next_update is not None and revocations.next_update <= self._clock():
            log.error("CRL %s expired at %s, treating every certificate as revoked",
                      self.crl, revocations.next_update)  # fmt: skip
            return True
        return (issuer, serial) in revocations.serials


@dataclass(frozen=True)
class RevocationList:
    """What the CRLs of one PEM file say: revoked ``(issuer, serial)`` pairs, and the earliest
    nextUpdate (after it the file is stale)."""

    serials: frozenset[tuple[str, int]]
    next_update: datetime | None


_BEGIN_CRL, _END_CRL = b"-----BEGIN X509 CRL-----", b"-----END X509 CRL-----"


def read_revocation_list(crl: Path) -> RevocationList:
    """Every CRL in a PEM file; ``ValueError`` unless each block is whole and there is one."""
    data = crl.read_bytes()
    blocks = data.count(_BEGIN_CRL)
    if blocks == 0 or blocks != data.count(_END_CRL):
        raise ValueError(f"{crl} does not hold whole PEM CRLs ({blocks} begin markers)")
    pairs: set[tuple[str, int]] = set()
    next_updates = []
    for block in data.split(_END_CRL)[:-1]:
        parsed = x509.load_pem_x509_crl(block + _END_CRL + b"\n")
        issuer = parsed.issuer.rfc4514_string()
        pairs.update((issuer, entry.serial_number) for entry in parsed)
        if parsed.next_update_utc is not None:
            next_updates.append(parsed.next_update_utc)
    return RevocationList(frozenset(pairs), min(next_updates, default=None))


def crl_next_update(crl: Path) -> datetime | None:
    """nextUpdate of the first CRL in a PEM file (feed it to an expiry alert)."""
    return x509.load_pem_x509_crl(crl.read_bytes()).next_update_utc


def cert_not_after(cert: Path) -> datetime:
    """notAfter of the first certificate in a PEM file (feed it to an expiry alert)."""
    return x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc


class TlsExpiryCollector:
    """Prometheus collector: expiry times of the server certificate and the CRL, read at scrape.

    Register it on the registry the /metrics view renders; alert when
    ``appliance_tls_crl_next_update_timestamp_seconds - time() < 2 * 3600`` (see
    docs/security-model.md). An unreadable file yields 0, which fires the alert at once.
    """

    def __init__(self, cert: Path | None, crl: Path | None) -> None:
        self.cert, self.crl = cert, crl

    def collect(self) -> Iterator[Metric]:
        cert, crl = self.cert, self.crl
        if cert is not None:
            yield _gauge(
                "appliance_tls_server_cert_not_after_timestamp_seconds",
                "notAfter of the served TLS certificate (Unix time)",
                lambda: cert_not_after(cert),
            )
        if crl is not None:
            yield _gauge(
                "appliance_tls_crl_next_update_timestamp_seconds",
                "nextUpdate of the CRL checked at the TLS handshake (Unix time)",
                lambda: crl_next_update(crl),
            )


def _gauge(name: str, doc: str, read: Callable[[], datetime | None]) -> GaugeMetricFamily:
    try:
        when = read()
        value = when.timestamp() if when is not None else 0.0
    except (OSError, ValueError):
        value = 0.0
    return GaugeMetricFamily(name, doc, value=value)


def _default_factory(cert: Path, key: Path, ca: Path) -> Callable[[], ssl.SSLContext]:
    """What gunicorn's default factory does, for the start-up check."""

    def build() -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca))
        context.load_cert_chain(certfile=str(cert), keyfile=str(key))
        return context

    return build


def _stamp(path: str | Path | None) -> FileStamp:
    if path is None:
        return None
    info = os.stat(path)
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
