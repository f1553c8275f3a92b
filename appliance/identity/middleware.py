"""WSGI middleware: the TLS-verified client certificate becomes ``environ[IDENTITY_ENVIRON_KEY]``.

Per request, in this order:

1. delete everything a client or a stray proxy could have used to claim an identity: environ keys
   ``SSL_CLIENT_*``, ``REMOTE_USER``, ``IDENTITY_ENVIRON_KEY`` itself, and forwarded-certificate
   headers (``X-Client-Cert``, ``X-SSL-Client-*``, ``SSL-Client-*``, ``X-Forwarded-Client-Cert``,
   RFC 9440 ``Client-Cert`` / ``Client-Cert-Chain``, ``X-ARR-ClientCert``, ``X-SSL-Cert``);
2. read the peer certificate gunicorn's TLS socket verified during the handshake
   (``environ["gunicorn.socket"].getpeercert(binary_form=True)``);
3. publish an ``Identity`` with the roles from the role table, or nothing when there is no verified
   certificate (then ``appliance.identity.access`` answers 401).
"""

from __future__ import annotations

import logging
import ssl
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from threading import Lock
from typing import Any

from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY, Identity
from appliance.identity.peercert import facts_from_der, identity_from_facts
from appliance.identity.roles import RoleMap
from appliance.identity.tls import RevokedSerials

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

FORGEABLE_PREFIXES = (
    "SSL_CLIENT_",
    "HTTP_SSL_CLIENT",
    "HTTP_X_SSL_CLIENT",
    "HTTP_X_CLIENT_CERT",
    "HTTP_X_CLIENT_VERIFY",
    "HTTP_X_CLIENT_DN",
    "HTTP_X_CLIENT_S_DN",
    "HTTP_X_FORWARDED_CLIENT_CERT",
    "HTTP_CLIENT_CERT",
    "HTTP_X_ARR_CLIENTCERT",
    "HTTP_X_SSL_CERT",
    "HTTP_X_TLS_CLIENT",
)
FORGEABLE_KEYS = frozenset({"REMOTE_USER", IDENTITY_ENVIRON_KEY})
CACHE_SIZE = 1024


def scrub_forgeable(environ: dict[str, Any]) -> list[str]:
    """Delete identity-looking keys a client could have supplied; return what was deleted."""
    doomed = [
        key
        for key in environ
        if key in FORGEABLE_KEYS or key.upper().startswith(FORGEABLE_PREFIXES)
    ]
    for key in doomed:
        del environ[key]
    return doomed


def peer_certificate_der(environ: dict[str, Any]) -> bytes | None:
    """The DER certificate the TLS handshake verified, or None (no TLS socket, no certificate)."""
    sock = environ.get("gunicorn.socket")
    if not isinstance(sock, ssl.SSLSocket):
        return None
    try:
        der = sock.getpeercert(binary_form=True)
    except (ValueError, OSError):  # handshake not done / socket already closed
        return None
    return der or None


class ClientCertMiddleware:
    """Wrap a WSGI app; see the module doc. ``role_map`` is fixed for the worker's life.

    With ``revoked`` (the CRL the TLS layer uses), a certificate revoked after its connection was
    opened stops being an identity from the next request on (keep-alive connections).
    """

    def __init__(
        self, app: WSGIApp, role_map: RoleMap, revoked: RevokedSerials | None = None
    ) -> None:
        self.app = app
        self.role_map = role_map
        self.revoked = revoked
        self._cache: OrderedDict[bytes, tuple[Identity, str]] = OrderedDict()
        self._lock = Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        removed = scrub_forgeable(environ)
        if removed:
            log.info("removed client-supplied identity keys %s", sorted(removed))
        der = peer_certificate_der(environ)
        if der is not None:
            identity, issuer = self._identity(der)
            if self._still_valid(identity, issuer):
                environ[IDENTITY_ENVIRON_KEY] = identity
        return self.app(environ, start_response)

    def _still_valid(self, identity: Identity, issuer: str) -> bool:
        if identity.not_after <= datetime.now(UTC):  # a long keep-alive can outlive it
            return False
        if self.revoked is not None and self.revoked.is_revoked(issuer, int(identity.serial, 16)):
            log.warning("certificate %s was revoked during its connection", identity.serial)
            return False
        return True

    def _identity(self, der: bytes) -> tuple[Identity, str]:
        with self._lock:
            cached = self._cache.get(der)
            if cached is not None:
                self._cache.move_to_end(der)
                return cached
        facts = facts_from_der(der)
        roles, quotas = self.role_map.roles_for(facts), self.role_map.quotas_for(facts)
        entry = (identity_from_facts(facts, roles, quotas), facts.issuer)
        with self._lock:
            self._cache[der] = entry
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return entry


def with_client_identity(
    app: WSGIApp, roles: RoleMap, crl_path: Path | None = None
) -> ClientCertMiddleware:
    """``app`` wrapped so it sees the caller's ``Identity`` (its roles and quotas from
    ``roles``)."""
    revoked = RevokedSerials(crl_path) if crl_path is not None else None
    return ClientCertMiddleware(app, roles, revoked)


def install_client_identity(app: Any, roles: RoleMap, crl_path: Path | None = None) -> None:
    """Wrap a Flask app's ``wsgi_app`` in place, so ``app`` stays the Flask object gunicorn loads.

    Call it only in the production entry point (``appliance/wsgi.py``): the middleware deletes any
    identity a test client puts in the environ. Pass the same CRL as ``APPLIANCE_TLS_CRL``.
    """
    app.wsgi_app = with_client_identity(app.wsgi_app, roles, crl_path)
