"""The sealer's key: who signs checkpoints and writes the sealer's own entries, and the public
half it checks its own earlier signatures with."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit import checkpoint as notes
from audit.chain import format_time
from audit.types import Checkpoint, Event


@dataclass(frozen=True)
class Verifier:
    """A signer's public key: is a note one of its own checkpoints?"""

    name: str
    public: Ed25519PublicKey
    origin: str

    def open(self, note: str) -> Checkpoint:
        return notes.open_note(note, self.name, self.public, self.origin).checkpoint

    @property
    def vkey(self) -> str:
        return notes.vkey(self.name, self.public)


@dataclass(frozen=True)
class Signer:
    """Who signs checkpoints: the log's origin line, the key name and the Ed25519 key."""

    origin: str
    name: str
    key: Ed25519PrivateKey

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.key.public_key(), self.origin)

    def event(self, action: str, status: int, **fields: Any) -> Event:
        """An event the sealer itself records (a quarantine, an accepted restore)."""
        return Event(
            event_id=str(uuid.uuid4()),
            occurred_at=format_time(datetime.now(UTC)),
            action=action,
            outcome_status=status,
            request_id=f"audit-sealer:{uuid.uuid4().hex}",
            actor_subject=self.name,
            **fields,
        )
