"""The sealer against an insider with superuser access: it never signs a log that does not extend
the last tree it signed, says why, and seals again only after an explicit, recorded acceptance.
Poison rows are set aside, not crash-looped on."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from prometheus_client import REGISTRY

from audit import sealer as sealer_module
from audit import service
from audit.chain import chain_hash, encode_event, entry_hash, wrap
from audit.errors import SealingRefused
from audit.integrity import Trust
from audit.quarantine import QUARANTINED
from audit.rfc6962 import CompactRange, hash_leaf
from audit.sealer import RESTORE_ACCEPTED, Sealer
from audit.sealer_state import SealerState
from audit.signer import Signer
from tests.audit.conftest import ORIGIN, add_events, make_event

TAIL = 32


@pytest.fixture
def sealed_64(audit_db: str, sealer_url: str, signer: Signer, state: SealerState) -> str:
    """64 sealed events, a checkpoint after each batch of 16 (superuser URL; the sealer's
    login is ``sealer_url``)."""
    for batch in range(4):
        add_events(audit_db, 16, start=batch * 16)
        sealer = Sealer(sealer_url, signer, state)
        assert sealer.run_once() == 16
        sealer.close()
    return audit_db


def superuser(url: str) -> psycopg.Connection[tuple[object, ...]]:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("SET session_replication_role = replica")  # the insider turns the triggers off
    return conn


def roll_back(url: str, keep: int) -> None:
    """Delete the entries from ``keep`` on and the checkpoints above, move the head back."""
    with superuser(url) as conn:
        conn.execute("DELETE FROM audit_entries WHERE seq >= %s", [keep])
        conn.execute("DELETE FROM audit_checkpoints WHERE size > %s", [keep])
        conn.execute(
            "UPDATE audit_chain_head SET seq = %s,"
            " chain_hash = (SELECT chain_hash FROM audit_entries WHERE seq = %s) WHERE id = 1",
            [keep - 1, keep - 1],
        )


def rewrite_tail(url: str, keep: int, count: int) -> None:
    """Replace the entries from ``keep`` on by ``count`` forged ones with correct hashes."""
    with superuser(url) as conn:
        conn.execute("DELETE FROM audit_entries WHERE seq >= %s", [keep])
        row = conn.execute("SELECT chain_hash FROM audit_entries WHERE seq = %s", [keep - 1])
        chain = bytes(row.fetchone()[0])  # type: ignore[index]
        for seq in range(keep, keep + count):
            event = make_event(10_000 + seq, action="forged")
            entry = wrap(seq, encode_event(event))
            digest = entry_hash(entry)
            chain = chain_hash(chain, digest)
            conn.execute(
                "INSERT INTO audit_entries (seq, event_id, entry, entry_hash, chain_hash,"
                " occurred_at, action, outcome_status) VALUES (%s, %s, %s, %s, %s, now(), %s, 200)",
                [seq, event.event_id, entry, digest, chain, "forged"],
            )
        conn.execute(
            "UPDATE audit_chain_head SET seq = %s, chain_hash = %s WHERE id = 1",
            [keep + count - 1, chain],
        )


def checkpoint_sizes(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT size FROM audit_checkpoints ORDER BY size")]


def refusing(reason: str) -> float | None:
    return REGISTRY.get_sample_value("audit_sealer_refusing", {"reason": reason})


def test_a_rolled_back_log_is_not_signed(
    sealed_64: str, sealer_url: str, signer: Signer, state: SealerState
) -> None:
    """The attack of issue 12: the newest 32 entries and the checkpoints above them deleted,
    the chain head set back. Before, the sealer reloaded and signed the shorter log."""
    roll_back(sealed_64, 64 - TAIL)
    add_events(sealed_64, 5, start=100)
    sealer = Sealer(sealer_url, signer, state)
    with pytest.raises(SealingRefused) as refused:
        sealer.run_once()
    assert refused.value.reason == "head_moved_back"
    assert "32 entries; this sealer signed 64" in str(refused.value)
    assert checkpoint_sizes(sealed_64) == [16, 32]  # nothing new was signed


@pytest.mark.parametrize(
    ("forged", "delete_checkpoints", "reason"),
    [(40, True, "checkpoint_missing"), (40, False, "entries_rewritten")],
    ids=["checkpoints-deleted", "checkpoints-kept"],
)
def test_a_rewritten_tail_with_recomputed_hashes_is_not_signed(
    sealed_64: str,
    sealer_url: str,
    signer: Signer,
    state: SealerState,
    forged: int,
    delete_checkpoints: bool,
    reason: str,
) -> None:
    rewrite_tail(sealed_64, 64 - TAIL, forged)
    if delete_checkpoints:
        with superuser(sealed_64) as conn:
            conn.execute("DELETE FROM audit_checkpoints WHERE size > %s", [64 - TAIL])
    before = checkpoint_sizes(sealed_64)
    sealer = Sealer(sealer_url, signer, state)
    with pytest.raises(SealingRefused) as refused:
        sealer.run_once()
    assert refused.value.reason == reason
    assert checkpoint_sizes(sealed_64) == before


def test_the_running_sealer_stops_signing_and_says_why(
    sealed_64: str,
    sealer_url: str,
    signer: Signer,
    state: SealerState,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sealer_module, "REFUSAL_RETRY_S", 0.1)
    sealer = Sealer(sealer_url, signer, state, checkpoint_interval_s=0.05)
    stop = threading.Event()
    worker = threading.Thread(target=sealer.run, args=(stop, 0.05))
    worker.start()
    try:
        add_events(sealed_64, 3, start=200)
        deadline = time.monotonic() + 20
        while 67 not in checkpoint_sizes(sealed_64) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert refusing("head_moved_back") == 0
        roll_back(sealed_64, 64 - TAIL)
        add_events(sealed_64, 3, start=300)
        while refusing("head_moved_back") != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert refusing("head_moved_back") == 1
        time.sleep(0.3)  # several refusals later
    finally:
        stop.set()
        worker.join(10)
    assert checkpoint_sizes(sealed_64) == [16, 32]
    refusals = [r for r in caplog.records if "sealing refused (head_moved_back)" in r.getMessage()]
    assert refusals and all(r.levelno == logging.ERROR for r in refusals)


def test_an_accepted_restore_is_recorded_and_sealing_resumes(
    sealed_64: str, sealer_url: str, signer: Signer, state: SealerState, trust: Trust
) -> None:
    """A real restore loses the newest entries too: the operator accepts the restored
    database's newest checkpoint; the gap is sealed into the log as an entry."""
    roll_back(sealed_64, 32)
    with psycopg.connect(sealed_64) as conn:
        note = conn.execute("SELECT note FROM audit_checkpoints WHERE size = 32").fetchone()[0]  # type: ignore[index]
    size = Sealer(sealer_url, signer, state).accept_restore(note)
    assert size == 33
    add_events(sealed_64, 4, start=500)
    sealer = Sealer(sealer_url, signer, state)
    assert sealer.run_once() == 4
    sealer.close()
    with psycopg.connect(sealed_64) as conn:
        result = service.verify_database(conn, trust)
        entry = conn.execute("SELECT entry FROM audit_entries WHERE seq = 32").fetchone()[0]  # type: ignore[index]
    assert (result.size, result.unsigned_entries) == (37, 0)
    recorded = service.entry_json(32, bytes(entry))
    assert recorded["action"] == RESTORE_ACCEPTED
    assert recorded["actor_subject"] == ORIGIN
    assert "accepted the checkpoint of size 32" in recorded["detail"]
    assert "this sealer had signed 64 entries" in recorded["detail"]


def test_accepting_needs_a_checkpoint_the_database_holds(
    sealed_64: str, sealer_url: str, signer: Signer, state: SealerState
) -> None:
    with psycopg.connect(sealed_64) as conn:
        note = conn.execute("SELECT note FROM audit_checkpoints WHERE size = 64").fetchone()[0]  # type: ignore[index]
    roll_back(sealed_64, 32)
    with pytest.raises(SealingRefused) as refused:
        Sealer(sealer_url, signer, state).accept_restore(note)
    assert refused.value.reason == "checkpoint_missing"


def test_without_its_state_the_sealer_does_not_trust_a_log_with_entries(
    sealed_64: str, sealer_url: str, signer: Signer, tmp_path: Path
) -> None:
    sealer = Sealer(sealer_url, signer, SealerState(tmp_path / "elsewhere.state"))
    with pytest.raises(SealingRefused) as refused:
        sealer.run_once()
    assert refused.value.reason == "no_state"


def test_a_state_file_of_another_key_is_refused(
    sealed_64: str, sealer_url: str, signer: Signer, state: SealerState, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = Signer(ORIGIN, ORIGIN, Ed25519PrivateKey.generate())
    with pytest.raises(SealingRefused) as refused:
        Sealer(sealer_url, other, state).run_once()
    assert refused.value.reason == "bad_state"


def test_checkpoints_signed_after_the_state_was_saved_are_adopted(
    sealed_64: str, sealer_url: str, signer: Signer, state: SealerState, tmp_path: Path
) -> None:
    """A sealer killed between committing a checkpoint and saving its state (or a standby on
    the same host) finds later checkpoints of its own key that extend its state, and goes on."""
    behind = tmp_path / "behind.state"
    shutil.copy(state.path, behind)
    add_events(sealed_64, 8, start=400)
    ahead = Sealer(sealer_url, signer, state)
    assert ahead.run_once() == 8
    ahead.close()
    add_events(sealed_64, 2, start=450)
    resumed = Sealer(sealer_url, signer, SealerState(behind))
    assert resumed.run_once() == 2
    resumed.close()
    assert json.loads(behind.read_text())["size"] == 74
    assert checkpoint_sizes(sealed_64)[-2:] == [72, 74]


def test_poison_rows_are_quarantined_and_later_events_sealed(
    sealed_64: str, sealer_url: str, signer: Signer, state: SealerState, trust: Trust
) -> None:
    with psycopg.connect(sealed_64) as conn:
        sealed_id = conn.execute("SELECT event_id FROM audit_entries WHERE seq = 3").fetchone()[0]  # type: ignore[index]
        poison = [
            (make_event(900, event_id=str(sealed_id)), None),
            (make_event(901), b"\xff not an event"),
        ]
        for event, raw in poison:
            conn.execute(
                "INSERT INTO audit_pending (event_id, event, occurred_at, action, outcome_status)"
                " VALUES (%s, %s, now(), %s, 200)",
                [event.event_id, raw or encode_event(event), event.action],
            )
    before = REGISTRY.get_sample_value("audit_quarantined_rows_total", {"reason": "already_sealed"})
    later = add_events(sealed_64, 5, start=910)
    sealer = Sealer(sealer_url, signer, state)
    sealer.run_once()
    sealer.close()
    after = REGISTRY.get_sample_value("audit_quarantined_rows_total", {"reason": "already_sealed"})
    assert (after or 0) - (before or 0) == 1
    with psycopg.connect(sealed_64) as conn:
        result = service.verify_database(conn, trust)
        quarantined = conn.execute(
            "SELECT event_id::text, reason FROM audit_quarantine ORDER BY id"
        ).fetchall()
        recorded = [
            service.entry_json(seq, bytes(entry))
            for seq, entry in conn.execute(
                "SELECT seq, entry FROM audit_entries WHERE action = %s ORDER BY seq", [QUARANTINED]
            )
        ]
        pending = conn.execute("SELECT count(*) FROM audit_pending").fetchone()
        sealed_later = conn.execute(
            "SELECT count(*) FROM audit_entries WHERE event_id = ANY(%s::uuid[])",
            [[e.event_id for e in later]],
        ).fetchone()
    assert quarantined == [
        (str(sealed_id), "already_sealed"),
        (poison[1][0].event_id, "unreadable_event"),
    ]
    assert [(r["resource"], r["error_code"]) for r in recorded] == quarantined
    assert pending == (0,) and sealed_later == (5,)
    assert result.unsigned_entries == 0 and result.size == 64 + 2 + 5
    assert uuid.UUID(recorded[0]["event_id"])  # the sealer's own entry has an id of its own


def test_the_sealer_checks_a_consistency_proof_before_signing(
    sealed_64: str, sealer_url: str, signer: Signer, state: SealerState
) -> None:
    """Its own memory of the tree is not trusted either: a tree that does not extend the last
    signed one (here: the in-memory compact range corrupted, as a bug would) is not signed."""
    sealer = Sealer(sealer_url, signer, state)
    assert sealer.acquire()
    sealer._compact = CompactRange(64, [hash_leaf(b"not the tree")])  # 64 = one perfect subtree
    add_events(sealed_64, 3, start=700)
    with pytest.raises(SealingRefused) as refused:
        sealer.seal_batch(force_checkpoint=True)
    sealer.close()
    assert refused.value.reason == "inconsistent_tree"
    assert checkpoint_sizes(sealed_64) == [16, 32, 48, 64]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"action":"', '"action":"\u00e9'.encode()),  # valid JSON, not ASCII
        (b'"outcome_status":200', b'"outcome_status":200,"page_count":NaN'),
        (b'"outcome_status":200', b'"outcome_status":200,"page_count":1e999'),
        (b'"action":"', b'"action":"\\u0000'),
        (b'"action":"', b'"action":"\\ud800'),  # a surrogate without its pair
        (b'"outcome_status":200', b'"outcome_status":200,"detail":[["\\u0000"]]'),
    ],
    ids=["not-ascii", "nan", "overflowing-float", "nul", "lone-surrogate", "nested"],
)
def test_events_postgresql_would_not_parse_are_quarantined(
    sealed_64: str, sealer_url: str, signer: Signer, state: SealerState, trust: Trust,
    old: bytes, new: bytes,
) -> None:  # fmt: skip
    """Every sealed entry is parsed by PostgreSQL too (the derived columns of migration 0015):
    an event Python reads but PostgreSQL would refuse must not fail every batch."""
    event = make_event(920)
    raw = encode_event(event).replace(old, new, 1)
    assert raw != encode_event(event)
    with psycopg.connect(sealed_64) as conn:
        conn.execute(
            "INSERT INTO audit_pending (event_id, event, occurred_at, action, outcome_status)"
            " VALUES (%s, %s, now(), %s, 200)",
            [event.event_id, raw, event.action],
        )
    later = add_events(sealed_64, 2, start=930)
    sealer = Sealer(sealer_url, signer, state)
    sealer.run_once()
    sealer.close()
    with psycopg.connect(sealed_64) as conn:
        quarantined = conn.execute("SELECT event_id::text, reason FROM audit_quarantine").fetchall()
        sealed = conn.execute(
            "SELECT count(*) FROM audit_entries WHERE event_id = ANY(%s::uuid[])",
            [[e.event_id for e in later]],
        ).fetchone()
    with psycopg.connect(sealed_64) as conn:
        assert service.verify_database(conn, trust).size == 64 + 1 + 2
    assert quarantined == [(event.event_id, "unreadable_event")] and sealed == (2,)
