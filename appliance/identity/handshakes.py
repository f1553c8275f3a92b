"""Failed TLS handshakes as security events: a counter by reason and one structured log line.

A refused handshake never reaches the app, so nothing else sees a revoked, expired or foreign
certificate knocking. ``harden`` sets ``ObservedSSLSocket`` as the context's socket class (the
``ssl.SSLContext.sslsocket_class`` hook): gunicorn's ``wrap_socket`` then returns it, and its
``do_handshake`` records the failure before re-raising it. The reason is one of a fixed set (a
bounded metrics label); the log line names the peer address and OpenSSL's verdict, nothing the
peer could have chosen to write.
"""

from __future__ import annotations

import logging
import ssl

from appliance import metrics

log = logging.getLogger(__name__)

# OpenSSL's X509_V_ERR_* codes that a client certificate can fail with, by reason.
_VERIFY_REASONS = {
    9: "not_yet_valid",
    10: "expired",
    12: "crl_expired",
    23: "revoked",
    2: "unknown_ca",
    18: "unknown_ca",
    19: "unknown_ca",
    20: "unknown_ca",
    21: "unknown_ca",
    3: "crl_missing",
    8: "crl_invalid",
    7: "bad_signature",
}
_CLOSED = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError)


def failure_reason(exc: BaseException) -> str:
    """A bounded name for why a handshake failed."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _VERIFY_REASONS.get(exc.verify_code, "verify_failed")
    if isinstance(exc, _CLOSED):
        return "closed"
    if getattr(exc, "reason", None) == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return "no_certificate"
    return "protocol"


def record_failure(exc: BaseException, peer: str | None) -> None:
    reason = failure_reason(exc)
    metrics.TLS_HANDSHAKE_FAILURES.labels(reason).inc()
    detail = getattr(exc, "verify_message", None) or getattr(exc, "reason", None)
    # A peer that hangs up mid-handshake (a port probe) is routine; the rest is refused access.
    level = logging.DEBUG if reason == "closed" else logging.WARNING
    fields = {"event": "tls_handshake_failed", "reason": reason, "peer": peer, "detail": detail}
    log.log(level, "TLS handshake refused", extra=fields)


class ObservedSSLSocket(ssl.SSLSocket):
    """An ``SSLSocket`` whose failed handshakes are recorded (see the module doc)."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except (ssl.SSLError, ConnectionError) as exc:
            record_failure(exc, _peer_address(self))
            raise


def _peer_address(sock: ssl.SSLSocket) -> str | None:
    try:
        return str(sock.getpeername()[0])
    except OSError:
        return None
