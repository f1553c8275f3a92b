"""Checkpoint key rotation: the old key vouches for the new one inside the log, so auditors keep
only the first key pinned; a "rotation" to a key nobody vouched for is caught."""

from __future__ import annotations

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import checkpoint as notes
from audit import service
from audit.errors import TamperingDetected
from audit.integrity import Trust
from audit.proof import Tree
from audit.rfc6962 import CompactRange, hash_leaf
from audit.sealer import KEY_ROTATED, Sealer
from audit.sealer_state import SealerState
from audit.signer import Signer
from audit.types import Checkpoint, TamperKind
from audit.witness import Witness, WitnessState
from tests.audit.conftest import ORIGIN, add_events
from tests.audit.test_rollback import superuser
from tests.audit.test_witness import request


def seal(db: tuple[str, str], signer: Signer, state: SealerState, count: int, start: int) -> None:
    """``db``: (superuser URL, sealer URL) of one database."""
    admin, sealing = db
    add_events(admin, count, start=start)
    sealer = Sealer(sealing, signer, state)
    sealer.run_once()
    sealer.close()


def test_verify_follows_a_rotation_with_only_the_first_key_pinned(
    audit_db: str, sealer_url: str, signer: Signer, state: SealerState, trust: Trust
) -> None:
    db = (audit_db, sealer_url)
    seal(db, signer, state, 10, 0)
    successor = Signer(ORIGIN, ORIGIN, Ed25519PrivateKey.generate())
    assert Sealer(sealer_url, signer, state).rotate_key(successor) == 11
    seal(db, successor, state, 10, 100)  # the sealer now runs with the new key
    seal(db, successor, state, 5, 200)
    with psycopg.connect(audit_db) as conn:
        result = service.verify_database(conn, trust)  # the first key only
        rotated = service.entry_json(
            10, conn.execute("SELECT entry FROM audit_entries WHERE seq = 10").fetchone()[0]
        )  # type: ignore[index]
        notes_by_size = dict(conn.execute("SELECT size, note FROM audit_checkpoints").fetchall())
    assert (result.size, result.checkpoints_verified, result.unsigned_entries) == (26, 4, 0)
    assert rotated["action"] == KEY_ROTATED
    assert successor.verifier.vkey in rotated["detail"]
    with pytest.raises(Exception, match="no signature"):
        notes.open_note(notes_by_size[21], signer.name, signer.key.public_key())


def test_a_rotation_signed_by_an_unknown_key_fails(
    audit_db: str, sealer_url: str, signer: Signer, state: SealerState, trust: Trust
) -> None:
    """An insider without the key writes a checkpoint announcing their own key, signed by it,
    then checkpoints signed by that key: verification stops at the forged announcement."""
    seal((audit_db, sealer_url), signer, state, 10, 0)
    intruder = Signer(ORIGIN, ORIGIN, Ed25519PrivateKey.generate())
    with psycopg.connect(audit_db) as conn:
        stored = conn.execute(
            "SELECT size, compact_range, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
    size, blob, note = int(stored[0]), bytes(stored[1]), str(stored[2])  # type: ignore[index]
    body = notes.parse_body(note.partition("\n\n")[0] + "\n")
    forged = Checkpoint(ORIGIN, size, CompactRange.from_bytes(size, blob).root(), body.chain,
                        intruder.verifier.vkey)  # fmt: skip
    with superuser(audit_db) as conn:
        conn.execute("DELETE FROM audit_checkpoints WHERE size = %s", [size])
        conn.execute(
            "INSERT INTO audit_checkpoints (size, root, note, compact_range)"
            " VALUES (%s, %s, %s, %s)",
            [size, forged.root, notes.sign(forged, intruder.name, intruder.key).note, blob],
        )
    with psycopg.connect(audit_db) as conn, pytest.raises(TamperingDetected) as found:
        service.verify_database(conn, trust)
    assert found.value.kind is TamperKind.BAD_SIGNATURE
    assert found.value.seq == size - 1


def test_the_witness_follows_a_rotation_it_cosigned(signer: Signer, tmp_path) -> None:  # type: ignore[no-untyped-def]

    tree = Tree([hash_leaf(b"%d" % i) for i in range(30)])
    successor = Signer(ORIGIN, ORIGIN, Ed25519PrivateKey.generate())
    witness = Witness(
        "w", Ed25519PrivateKey.generate(), [signer.verifier], WitnessState(tmp_path / "w")
    )
    announce = notes.add_signature(
        notes.sign(Checkpoint(ORIGIN, 10, tree.root(10), None, successor.verifier.vkey),
                   signer.name, signer.key),
        successor.name, successor.key,
    )  # fmt: skip
    assert witness.add_checkpoint(request(0, [], announce.note)).status == 200
    later = notes.sign(Checkpoint(ORIGIN, 20, tree.root(20)), successor.name, successor.key).note
    assert witness.add_checkpoint(request(10, tree.consistency(10, 20), later)).status == 200
    old_key = notes.sign(Checkpoint(ORIGIN, 30, tree.root(30)), signer.name, signer.key).note
    assert witness.add_checkpoint(request(20, tree.consistency(20, 30), old_key)).status == 403
