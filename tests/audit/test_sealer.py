"""The sealer: one leader, fencing against a stale view, checkpoints."""

from __future__ import annotations

import psycopg

from audit import service
from audit.integrity import Trust
from audit.sealer import Sealer
from audit.sealer_state import SealerState
from audit.signer import Signer
from tests.audit.conftest import add_events


def test_only_one_sealer_leads(
    audit_db: str, sealer_url: str, signer: Signer, state: SealerState
) -> None:
    first, second = Sealer(sealer_url, signer, state), Sealer(sealer_url, signer, state)
    assert first.acquire()
    assert not second.acquire()
    add_events(audit_db, 5)
    assert second.run_once() == 0  # stands by
    assert first.run_once() == 5
    first.close()
    assert second.acquire()
    second.close()


def test_a_stale_sealer_is_fenced_and_resumes_from_the_real_head(
    audit_db: str, sealer_url: str, signer: Signer, trust: Trust, state: SealerState
) -> None:
    stale = Sealer(sealer_url, signer, state)
    add_events(audit_db, 10)
    assert stale.run_once() == 10
    stale_conn = stale._conn
    assert stale_conn is not None
    stale_conn.execute("SELECT pg_advisory_unlock_all()")  # as if its lock had been lost
    other = Sealer(sealer_url, signer, state)
    add_events(audit_db, 7, start=10)
    assert other.run_once() == 7
    other.close()
    stale_conn.execute("SELECT pg_advisory_lock(%s)", [0x6175646974])
    add_events(audit_db, 3, start=17)
    assert stale.run_once() == 3  # saw head 16 under FOR UPDATE, not its remembered 9
    stale.close()
    with psycopg.connect(audit_db) as conn:
        result = service.verify_database(conn, trust)
        seqs = [r[0] for r in conn.execute("SELECT seq FROM audit_entries ORDER BY seq")]
    assert seqs == list(range(20))
    assert (result.size, result.unsigned_entries) == (20, 0)


def test_checkpoints_are_due_by_interval_and_forced_by_run_once(
    audit_db: str, sealer_url: str, signer: Signer, state: SealerState
) -> None:
    sealer = Sealer(sealer_url, signer, state, batch_size=4, checkpoint_interval_s=3600)
    add_events(audit_db, 10)
    assert sealer.acquire()
    assert sealer.seal_batch() == 4  # the first checkpoint is due at once
    assert sealer.seal_batch() == 4  # the next one is not due for an hour
    assert sealer.run_once() == 2  # run_once always signs what it sealed
    sealer.close()
    with psycopg.connect(audit_db) as conn:
        sizes = [r[0] for r in conn.execute("SELECT size FROM audit_checkpoints ORDER BY size")]
    assert sizes == [4, 10]
