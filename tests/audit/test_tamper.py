"""Tampering with the tables directly, as a superuser: each kind is caught at its first bad seq."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import checkpoint as notes
from audit import parallel, service
from audit.errors import TamperingDetected
from audit.integrity import Trust, VerifyResult
from audit.parallel import verify_parallel
from audit.types import Checkpoint, TamperKind
from tests.audit.conftest import ORIGIN


def _tamper(url: str, *statements: str) -> None:
    """Run statements with triggers off (session_replication_role = replica), as attackers can."""
    with psycopg.connect(url) as conn:
        conn.execute("SET session_replication_role = replica")
        for statement in statements:
            conn.execute(statement)


Verifier = Callable[[str, Trust], VerifyResult]


def _sequential(url: str, trust: Trust) -> VerifyResult:
    with psycopg.connect(url) as conn:
        return service.verify_database(conn, trust)


def _parallel(url: str, trust: Trust) -> VerifyResult:
    """Two worker processes even for a tiny log; any anomaly must still be caught."""
    return verify_parallel(url, trust, workers=2, min_rows_per_worker=1)


@pytest.fixture(params=[_sequential, _parallel], ids=["sequential", "parallel"])
def verify(request: pytest.FixtureRequest) -> Verifier:
    return request.param  # type: ignore[no-any-return]


def _detected(verify: Verifier, url: str, trust: Trust) -> TamperingDetected:
    with pytest.raises(TamperingDetected) as caught:
        verify(url, trust)
    return caught.value


def test_untouched_log_verifies_clean(verify: Verifier, sealed_log: str, trust: Trust) -> None:
    result = verify(sealed_log, trust)
    assert result == _sequential(sealed_log, trust)
    assert (result.start, result.size, result.checkpoints_verified) == (0, 40, 4)
    assert result.unsigned_entries == 0
    assert result.latest is not None and result.latest.size == 40


def test_edited_field_is_modified(verify: Verifier, sealed_log: str, trust: Trust) -> None:
    _tamper(
        sealed_log,
        "UPDATE audit_entries SET entry = convert_to(replace(convert_from(entry, 'UTF8'),"
        " '\"outcome_status\":200', '\"outcome_status\":403'), 'UTF8') WHERE seq = 17",
    )
    found = _detected(verify, sealed_log, trust)
    assert (found.kind, found.seq) == (TamperKind.MODIFIED, 17)


def test_edit_with_recomputed_hashes_is_caught_by_the_signed_root(
    verify: Verifier, sealed_log: str, trust: Trust
) -> None:
    """A careful attacker rewrites the bytes and recomputes every entry and chain hash."""
    with psycopg.connect(sealed_log) as conn:
        conn.execute("SET session_replication_role = replica")
        rows = conn.execute("SELECT seq, entry FROM audit_entries ORDER BY seq").fetchall()
        chain = bytes(32)
        for seq, entry in rows:
            data = bytes(entry)
            if seq == 25:
                data = data.replace(b'"outcome_status":200', b'"outcome_status":500')
            digest = hashlib.sha256(b"\x00" + data).digest()
            chain = hashlib.sha256(chain + digest).digest()
            conn.execute(
                "UPDATE audit_entries SET entry = %s, entry_hash = %s, chain_hash = %s"
                " WHERE seq = %s",
                [data, digest, chain, seq],
            )
    found = _detected(verify, sealed_log, trust)
    # Only the checkpoints can tell: the first bad seq is bounded by the last good checkpoint.
    assert found.kind == TamperKind.MODIFIED
    assert found.seq == 20


def test_deleted_row(verify: Verifier, sealed_log: str, trust: Trust) -> None:
    _tamper(sealed_log, "DELETE FROM audit_entries WHERE seq = 12")
    found = _detected(verify, sealed_log, trust)
    assert (found.kind, found.seq) == (TamperKind.DELETED, 12)


def test_deleted_row_with_renumbering(verify: Verifier, sealed_log: str, trust: Trust) -> None:
    _tamper(
        sealed_log,
        "DELETE FROM audit_entries WHERE seq = 12",
        "UPDATE audit_entries SET seq = seq + 1000 WHERE seq > 12",
        "UPDATE audit_entries SET seq = seq - 1001 WHERE seq >= 1000",
    )
    found = _detected(verify, sealed_log, trust)
    assert (found.kind, found.seq) == (TamperKind.DELETED, 12)


def test_inserted_row(verify: Verifier, sealed_log: str, trust: Trust) -> None:
    """Shift rows 15.. up by one and slip a well-formed, self-consistent forged row in at 15."""
    with psycopg.connect(sealed_log) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE audit_entries SET seq = seq + 1001 WHERE seq >= 15")
        conn.execute("UPDATE audit_entries SET seq = seq - 1000 WHERE seq >= 1000")
        row = conn.execute("SELECT entry, chain_hash FROM audit_entries WHERE seq = 16").fetchone()
        prev = conn.execute("SELECT chain_hash FROM audit_entries WHERE seq = 14").fetchone()
        assert row and prev
        forged = bytes(row[0]).replace(b"req-15", b"req-XX")
        forged = forged.replace(forged[forged.index(b'"event_id":"') + 12 :][:36], b"0" * 36)
        digest = hashlib.sha256(b"\x00" + forged).digest()
        conn.execute(
            "INSERT INTO audit_entries (seq, event_id, entry, entry_hash, chain_hash, occurred_at,"
            " action, outcome_status) VALUES (15, gen_random_uuid(), %s, %s, %s, now(), 'x', 200)",
            [forged, digest, hashlib.sha256(bytes(prev[0]) + digest).digest()],
        )
    found = _detected(verify, sealed_log, trust)
    assert (found.kind, found.seq) == (TamperKind.INSERTED, 15)


def test_swapped_rows(verify: Verifier, sealed_log: str, trust: Trust) -> None:
    _tamper(
        sealed_log,
        "UPDATE audit_entries SET seq = 1000 WHERE seq = 8",
        "UPDATE audit_entries SET seq = 8 WHERE seq = 21",
        "UPDATE audit_entries SET seq = 21 WHERE seq = 1000",
    )
    found = _detected(verify, sealed_log, trust)
    assert (found.kind, found.seq) == (TamperKind.REORDERED, 8)


def test_swapped_adjacent_rows(verify: Verifier, sealed_log: str, trust: Trust) -> None:
    _tamper(
        sealed_log,
        "UPDATE audit_entries SET seq = 1000 WHERE seq = 30",
        "UPDATE audit_entries SET seq = 30 WHERE seq = 31",
        "UPDATE audit_entries SET seq = 31 WHERE seq = 1000",
    )
    found = _detected(verify, sealed_log, trust)
    assert (found.kind, found.seq) == (TamperKind.REORDERED, 30)


def test_truncated_tail(verify: Verifier, sealed_log: str, trust: Trust) -> None:
    """Rows 33.. deleted and the chain head rolled back to match: the checkpoint still knows."""
    _tamper(
        sealed_log,
        "DELETE FROM audit_entries WHERE seq >= 33",
        "UPDATE audit_chain_head SET seq = 32,"
        " chain_hash = (SELECT chain_hash FROM audit_entries WHERE seq = 32)",
    )
    found = _detected(verify, sealed_log, trust)
    assert (found.kind, found.seq) == (TamperKind.TRUNCATED, 33)


@pytest.mark.parametrize(
    "forge",
    [
        lambda note: note.replace("\n30\n", "\n31\n"),
        lambda note: note[: note.rindex(" ") + 1] + base64.b64encode(bytes(68)).decode() + "\n",
    ],
    ids=["edited-size", "garbage-signature"],
)
def test_forged_checkpoint(
    verify: Verifier, sealed_log: str, trust: Trust, forge: Callable[[str], str]
) -> None:
    with psycopg.connect(sealed_log) as conn:
        row = conn.execute("SELECT note FROM audit_checkpoints WHERE size = 30").fetchone()
    assert row
    _tamper(sealed_log, "DELETE FROM audit_checkpoints WHERE size = 30")
    with psycopg.connect(sealed_log) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            "INSERT INTO audit_checkpoints (size, root, note, compact_range)"
            " SELECT 30, root, %s, compact_range FROM audit_checkpoints WHERE size = 20",
            [forge(row[0])],
        )
    found = _detected(verify, sealed_log, trust)
    assert (found.kind, found.seq) == (TamperKind.BAD_SIGNATURE, 29)


def test_checkpoint_signed_by_another_key(verify: Verifier, sealed_log: str, trust: Trust) -> None:
    """An attacker rewrites the log and signs a fresh checkpoint with a key of their own."""
    rogue = Ed25519PrivateKey.generate()
    with psycopg.connect(sealed_log) as conn:
        latest = conn.execute("SELECT root FROM audit_checkpoints WHERE size = 40").fetchone()
        assert latest
        note = notes.sign(Checkpoint(ORIGIN, 41, bytes(latest[0])), ORIGIN, rogue).note  # type: ignore[arg-type]
        conn.execute(
            "INSERT INTO audit_checkpoints (size, root, note, compact_range)"
            " VALUES (41, %s, %s, '')",
            [latest[0], note],
        )
    found = _detected(verify, sealed_log, trust)
    assert (found.kind, found.seq) == (TamperKind.BAD_SIGNATURE, 40)


def test_triggers_reject_changes_to_sealed_rows(sealed_log: str) -> None:
    with psycopg.connect(sealed_log, autocommit=True) as conn:
        for statement in (
            "UPDATE audit_entries SET action = 'x' WHERE seq = 1",
            "DELETE FROM audit_entries WHERE seq = 1",
            "TRUNCATE audit_entries",
            "DELETE FROM audit_checkpoints",
            "TRUNCATE audit_checkpoints",
            "UPDATE audit_checkpoints SET note = ''",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)


def test_app_and_auditor_roles_cannot_change_the_log(sealed_log: str) -> None:
    with psycopg.connect(sealed_log, autocommit=True) as conn:
        for role in ("appliance_app", "appliance_auditor"):
            conn.execute(f"SET ROLE {role}")
            assert conn.execute("SELECT count(*) FROM audit_entries").fetchone() == (40,)
            for statement in (
                "UPDATE audit_entries SET action = 'x'",
                "DELETE FROM audit_entries",
                "INSERT INTO audit_entries (seq, entry)"
                " SELECT seq, entry FROM audit_entries LIMIT 0",
                "UPDATE audit_chain_head SET seq = 0",
                "DELETE FROM audit_pending",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
            conn.execute("RESET ROLE")
        conn.execute("SET ROLE appliance_auditor")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO audit_pending (event_id, event, occurred_at, action, outcome_status)"
                " VALUES (gen_random_uuid(), '', now(), 'x', 200)"
            )


@pytest.mark.parametrize(("workers", "block_height"), [(2, 8), (3, 8), (2, 2), (3, 1)])
def test_parallel_path_verifies_an_intact_log_without_falling_back(
    sealed_log: str, trust: Trust, monkeypatch: pytest.MonkeyPatch, workers: int,
    block_height: int,
) -> None:  # fmt: skip
    """Blocks of 256 leaves (none fits in this 40-entry log), of 4 and of 2 (most leaves come
    from the workers' block roots, the checkpoints at 20 and 40 end inside or at blocks)."""

    def no_fallback(*args: object) -> VerifyResult:
        raise AssertionError("the parallel verifier fell back on an intact log")

    monkeypatch.setattr(parallel, "_sequential", no_fallback)
    monkeypatch.setattr(parallel, "BLOCK_HEIGHT", block_height)
    result = verify_parallel(sealed_log, trust, workers=workers, min_rows_per_worker=1)
    assert result == _sequential(sealed_log, trust)
    with psycopg.connect(sealed_log) as conn:
        row = conn.execute("SELECT note FROM audit_checkpoints WHERE size = 20").fetchone()
    assert row
    kept = notes.open_note(row[0], trust.name, trust.public).checkpoint
    incremental = verify_parallel(sealed_log, trust, kept, workers=workers, min_rows_per_worker=1)
    assert (incremental.start, incremental.size, incremental.root) == (20, 40, result.root)
