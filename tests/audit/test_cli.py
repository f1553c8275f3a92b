"""``audit-tool`` end to end, as an auditor runs it: a read-only role, or offline on an export."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from audit import cli
from audit.integrity import Trust
from audit.parallel import verify_parallel
from audit.rfc6962 import hash_leaf
from audit.verify import verify_consistency, verify_inclusion
from tests.audit.conftest import ORIGIN, add_events


@dataclass
class Result:
    exit_code: int
    stdout: str
    output: str
    """stdout and stderr together."""


def run(*args: str) -> Result:
    """Invoke through ``main`` so the exit-code mapping is what is tested."""
    with CliRunner().isolation() as (stdout, _stderr, output):
        try:
            cli.main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return Result(code, stdout.getvalue().decode(), output.getvalue().decode())


@pytest.fixture
def auditor_url(sealed_log: str) -> str:
    """A LOGIN user that only holds ``appliance_auditor`` (read-only)."""
    with psycopg.connect(sealed_log, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'auditor_alice'").fetchone()
        if not exists:
            conn.execute("CREATE ROLE auditor_alice LOGIN IN ROLE appliance_auditor")
    base, _, dbname = sealed_log.rpartition("/")
    return base.replace("postgres@", "auditor_alice@") + "/" + dbname


def test_keygen_then_seal_then_verify(audit_db: str, sealer_url: str, tmp_path: Path) -> None:
    result = run("keygen", "--name", "site/log", "--out", str(tmp_path / "k"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "k.pem").stat().st_mode & 0o077 == 0
    assert result.output.startswith("site/log+")
    assert run("keygen", "--name", "x", "--out", str(tmp_path / "k")).exit_code == 2
    add_events(audit_db, 25)
    sealed = run(
        "seal", "--once", "--database-url", sealer_url, "--origin", "site/log",
        "--signing-key", str(tmp_path / "k.pem"),
    )  # fmt: skip
    assert sealed.exit_code == 0, sealed.output
    verified = run(
        "verify", "--database-url", audit_db, "--public-key", str(tmp_path / "k.vkey"), "--json"
    )
    assert verified.exit_code == 0, verified.output
    report = json.loads(verified.stdout)
    assert (report["status"], report["entries"], report["unsigned_entries"]) == ("ok", 25, 0)


def test_the_database_url_can_come_from_a_file(
    audit_db: str,
    sealer_url: str,
    key_files: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As services run the sealer: the URL (with its password) in a secret file."""
    url_file = tmp_path / "sealer-database-url"
    url_file.write_text(sealer_url + "\n")
    monkeypatch.delenv("AUDIT_DATABASE_URL", raising=False)
    monkeypatch.setenv("AUDIT_DATABASE_URL_FILE", str(url_file))
    add_events(audit_db, 3)
    signing_key = str(key_files / "signing.pem")
    state = str(tmp_path / "sealer.state")
    sealed = run(
        "seal", "--once", "--origin", ORIGIN, "--signing-key", signing_key, "--state-file", state
    )
    assert sealed.exit_code == 0, sealed.output
    verified = run("verify", "--public-key", str(key_files / "verifier.vkey"), "--json")
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["entries"] == 3
    monkeypatch.delenv("AUDIT_DATABASE_URL_FILE")
    assert run("search").exit_code == 2  # no URL from anywhere: a usage error


def test_read_only_role_verifies_and_reports(auditor_url: str, key_files: Path) -> None:
    vkey = str(key_files / "verifier.vkey")
    result = run("report", "--database-url", auditor_url, "--public-key", vkey)
    assert result.exit_code == 0, result.output
    assert "Status: OK" in result.stdout
    assert "classify_document" in result.stdout
    as_json = json.loads(
        run("report", "--database-url", auditor_url, "--public-key", vkey, "--json").stdout
    )
    assert as_json["entries"] == 40 and as_json["checkpoints_verified"] == 4


def test_verify_names_tampering_and_exits_1(sealed_log: str, key_files: Path) -> None:
    with psycopg.connect(sealed_log) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM audit_entries WHERE seq = 5")
    result = run(
        "verify", "--database-url", sealed_log, "--public-key", str(key_files / "verifier.vkey")
    )
    assert result.exit_code == 1
    assert "deleted at seq 5" in result.output


def test_incremental_verification_from_a_kept_checkpoint(
    sealed_log: str, key_files: Path, tmp_path: Path
) -> None:
    with psycopg.connect(sealed_log) as conn:
        row = conn.execute("SELECT note FROM audit_checkpoints WHERE size = 20").fetchone()
        assert row
        conn.execute("SET session_replication_role = replica")
        # Damage before the trusted checkpoint is out of scope for an incremental run...
        conn.execute("UPDATE audit_entries SET entry_hash = sha256(entry || 'x') WHERE seq = 3")
    kept = tmp_path / "cp20.txt"
    kept.write_text(row[0])
    vkey = str(key_files / "verifier.vkey")
    args = ("verify", "--database-url", sealed_log, "--public-key", vkey, "--json")
    result = run(*args, "--from-checkpoint", str(kept))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["start_seq"] == 20
    assert run(*args).exit_code == 1  # ...but a full run finds it
    with psycopg.connect(sealed_log) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE audit_entries SET entry_hash = sha256(entry || 'x') WHERE seq = 23")
    result = run(*args, "--from-checkpoint", str(kept))
    assert result.exit_code == 1
    assert json.loads(result.stdout)["tampering"] == {
        "kind": "modified", "seq": 23, "detail": "entry bytes do not match the entry hash"
    }  # fmt: skip


def test_export_verifies_offline_and_edits_are_caught(
    sealed_log: str, key_files: Path, tmp_path: Path
) -> None:
    out = tmp_path / "log.jsonl"
    result = run("export", "--database-url", sealed_log, "--output", str(out), "--proofs")
    assert result.exit_code == 0, result.output
    vkey = str(key_files / "verifier.vkey")
    offline = run("verify", "--export", str(out), "--public-key", vkey, "--json")
    assert offline.exit_code == 0, offline.output
    assert json.loads(offline.stdout)["entries"] == 40
    lines = out.read_text().splitlines()
    entry = next(i for i, line in enumerate(lines) if '"seq": 7,' in line)
    record = json.loads(lines[entry])
    assert len(record["proof"]["hashes"]) == 6  # ceil(log2 40)
    record["event"]["outcome_status"] = 403  # the readable copy no longer matches the bytes
    lines[entry] = json.dumps(record)
    out.write_text("\n".join(lines) + "\n")
    result = run("verify", "--export", str(out), "--public-key", vkey)
    assert result.exit_code == 1
    assert "modified at seq 7" in result.output


def test_pruned_archive_remains_verifiable(
    sealed_log: str, key_files: Path, tmp_path: Path
) -> None:
    """An export starting at a checkpoint (what remains after pruning) verifies on its own."""
    out = tmp_path / "tail.jsonl"
    assert (
        run("export", "--database-url", sealed_log, "--output", str(out), "--start", "20").exit_code
        == 0
    )
    args = ("verify", "--export", str(out), "--public-key", str(key_files / "verifier.vkey"))
    refused = run(*args)
    assert refused.exit_code == 1 and "deleted at seq 0" in refused.output
    result = run(*args, "--json", "--allow-pruned")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert (body["start_seq"], body["entries"]) == (20, 40)


def test_csv_export_and_search(sealed_log: str) -> None:
    result = run("export", "--database-url", sealed_log, "--format", "csv")
    rows = result.stdout.splitlines()
    assert rows[0].startswith("seq,event_id,occurred_at,action") and len(rows) == 41
    found = run("search", "--database-url", sealed_log, "--document", "doc-13")
    events = [json.loads(line) for line in found.stdout.splitlines()]
    assert [(e["seq"], e["resource"], e["request_id"]) for e in events] == [
        (13, "doc-13", "req-13")
    ]
    by_actor = run(
        "search", "--database-url", sealed_log, "--actor", "spiffe://hospital/svc/1", "--limit", "5"
    )
    assert len(by_actor.stdout.splitlines()) == 5


def test_proofs_verify_against_the_checkpoints(sealed_log: str) -> None:
    result = run(
        "proof", "inclusion", "--database-url", sealed_log, "--seq", "11", "--tree-size", "30"
    )
    body = json.loads(result.stdout)
    root = base64.b64decode(body["checkpoint"].split("\n")[2])
    leaf = hash_leaf(base64.b64decode(body["entry"]))
    verify_inclusion(11, 30, leaf, [base64.b64decode(h) for h in body["hashes"]], root)
    result = run("proof", "consistency", "--database-url", sealed_log, "--from", "10", "--to", "40")
    body = json.loads(result.stdout)
    verify_consistency(
        10, 40, [base64.b64decode(h) for h in body["hashes"]],
        base64.b64decode(body["checkpoint_from"].split("\n")[2]),
        base64.b64decode(body["checkpoint_to"].split("\n")[2]),
    )  # fmt: skip
    missing = run(
        "proof", "inclusion", "--database-url", sealed_log, "--seq", "11", "--tree-size", "12"
    )
    assert missing.exit_code == 2


def test_origin_is_checked(sealed_log: str, key_files: Path) -> None:
    result = run(
        "verify", "--database-url", sealed_log, "--public-key", str(key_files / "verifier.vkey"),
        "--origin", "another/log",
    )  # fmt: skip
    assert result.exit_code == 1
    assert ORIGIN in result.output


def test_parallel_verification_works_for_the_read_only_role(auditor_url: str, trust: Trust) -> None:
    result = verify_parallel(auditor_url, trust, workers=2, min_rows_per_worker=1)
    assert (result.size, result.checkpoints_verified) == (40, 4)
