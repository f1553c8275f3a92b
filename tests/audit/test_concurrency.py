"""Many writers, a sealer killed and restarted mid-run: one contiguous chain, each event once."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

from audit import service, store
from audit.integrity import Trust
from audit.sealer import Sealer
from audit.sealer_state import SealerState
from audit.signer import Signer
from tests.audit.conftest import ORIGIN, make_event

WRITERS = 32
MAX_EVENTS_PER_WRITER = 400


def _sealer_process(url: str, keys: Path, log: Path) -> subprocess.Popen[bytes]:
    """A sealer on this host: its state file sits beside the log."""
    with log.open("ab") as stderr:
        return subprocess.Popen(
            [
                sys.executable, "-m", "audit", "seal", "--database-url", url,
                "--signing-key", str(keys / "signing.pem"), "--origin", ORIGIN,
                "--state-file", str(log.with_name("sealer.state")),
                "--batch-size", "50", "--checkpoint-interval", "0.2",
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )  # fmt: skip


def _sealed(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM audit_entries").fetchone()
    return int(row[0]) if row else 0


def test_writers_and_a_killed_sealer_leave_one_contiguous_chain(
    audit_db: str,
    sealer_url: str,
    key_files: Path,
    signer: Signer,
    trust: Trust,
    tmp_path: Path,
) -> None:
    committed: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(WRITERS)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        """Writes until told to stop: across the kill, however fast or slow this machine is."""
        try:
            with psycopg.connect(audit_db, autocommit=True) as conn:
                start.wait()
                for i in range(MAX_EVENTS_PER_WRITER):
                    if stop.is_set():
                        return
                    event = make_event(n * 1000 + i)
                    store.append_pending(conn, event)  # autocommit: committed on return
                    with lock:
                        committed.append(event.event_id)
                    time.sleep(0.005)
        except BaseException as exc:
            errors.append(exc)

    log = tmp_path / "sealers.log"
    first = _sealer_process(sealer_url, key_files, log)
    standby = _sealer_process(sealer_url, key_files, log)  # must not fork the chain: it stands by
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while _sealed(audit_db) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sealed(audit_db) >= 200, "the sealer made no progress"
    first.send_signal(signal.SIGKILL)  # mid-run: writers are still writing
    first.wait(10)
    with lock:
        written_at_kill = len(committed)
    restarted = _sealer_process(sealer_url, key_files, log)
    time.sleep(1.0)  # writers go on while the standby or the restarted sealer takes over
    stop.set()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    time.sleep(1.0)
    for process in (standby, restarted):
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0, log.read_text()

    final = Sealer(sealer_url, signer, SealerState(log.with_name("sealer.state")))
    final.run_once()
    final.close()

    assert written_at_kill < len(committed), "no event was written after the kill"
    with psycopg.connect(audit_db) as conn:
        result = service.verify_database(conn, trust)
        rows = conn.execute("SELECT seq, event_id::text FROM audit_entries ORDER BY seq").fetchall()
        pending = conn.execute("SELECT count(*) FROM audit_pending").fetchone()
    assert pending == (0,)
    assert [seq for seq, _ in rows] == list(range(len(committed)))
    assert sorted(event_id for _, event_id in rows) == sorted(committed)
    assert result.size == len(committed)
    assert result.unsigned_entries == 0
