"""A verified caller, as the mutual-TLS middleware would publish it, for in-process clients."""

from __future__ import annotations

from datetime import UTC, datetime

from appliance.identity.interfaces import Identity, RuleQuota

FINGERPRINT = "ab" * 32


def identity(
    *roles: str, name: str = "spiffe://hospital/svc/intake", quotas: tuple[RuleQuota, ...] = ()
) -> Identity:
    return Identity(
        subject=f"CN={name.rsplit('/', 1)[-1]}",
        sans=(f"URI:{name}",),
        serial="01",
        fingerprint_sha256=FINGERPRINT,
        not_after=datetime(2030, 1, 1, tzinfo=UTC),
        roles=frozenset(roles),
        quotas=quotas,
    )
