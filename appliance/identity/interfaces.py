"""The caller's identity as the rest of the appliance sees it.

The identity comes only from the client certificate verified during the TLS handshake; nothing in a
request body or header can claim one. The WSGI middleware publishes it in the environ under
``IDENTITY_ENVIRON_KEY``; views read it through ``appliance.identity.access``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

IDENTITY_ENVIRON_KEY = "appliance.identity"

ROLES = frozenset({"classifier", "reader", "reviewer", "auditor", "admin", "metrics"})


@dataclass(frozen=True)
class QuotaLimits:
    """A role rule's quota: at most this many documents and model tokens per UTC minute and
    per UTC day (None: no limit on that measure)."""

    documents_per_minute: int | None = None
    documents_per_day: int | None = None
    tokens_per_minute: int | None = None
    tokens_per_day: int | None = None
    shared: bool = False
    """True: one budget for every identity the rule matches (a team); False: one each."""


@dataclass(frozen=True)
class RuleQuota:
    """The quota of one role-table rule that matched a caller."""

    rule: str
    """The rule as ``<field>=<pattern>`` (``uri=spiffe://hospital/svc/*``): its budget's name."""
    limits: QuotaLimits


@dataclass(frozen=True)
class Identity:
    """A verified caller: certificate facts plus the roles the configuration grants it."""

    subject: str
    """RFC 4514 distinguished name of the certificate subject."""
    sans: tuple[str, ...]
    """Subject alternative names as ``"URI:..."``, ``"DNS:..."``, ``"email:..."``."""
    serial: str
    """Certificate serial number, lower-case hex."""
    fingerprint_sha256: str
    """SHA-256 of the DER certificate, lower-case hex."""
    not_after: datetime
    roles: frozenset[str]
    quotas: tuple[RuleQuota, ...] = ()
    """The quotas of the rules that matched: each must have room for a request."""

    @property
    def name(self) -> str:
        """The most specific human-readable name: the first URI SAN, else the subject."""
        for san in self.sans:
            if san.startswith("URI:"):
                return san.removeprefix("URI:")
        return self.subject
