"""What the appliance decided cannot change behind the log's back.

Results and reviews are made through the API (as the application's login), sealed, then
tampered with the way an insider would: as the application's role (refused), and as a superuser
with the triggers set aside (found by ``audit-tool verify``, run as the auditor's login, which
names each change with its kind, the result or review id and the event's seq).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask

from appliance import migrate
from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY
from appliance.settings import Settings
from audit import crosscheck, store
from audit.chain import chain_hash, encode_event, entry_hash, wrap
from audit.derived import derived
from audit.sealer import Sealer
from audit.sealer_state import SealerState
from audit.signer import Signer
from harness.fake_vllm import FakeVllm
from harness.identity import identity
from harness.postgres import Logins, sqlalchemy_url
from tests.audit.conftest import ORIGIN, make_event
from tests.audit.test_cli import run
from tests.common.apps import app_over

RELABEL = "label = CASE label WHEN 'BILLING' THEN 'TEST_RESULTS' ELSE 'BILLING' END"
"""Another label than the stored one, whatever the model answered."""
DOCUMENTS = [
    ("MRN-1/visit-1", "Discharge summary: patient stable, follow up in two weeks."),
    ("MRN-2/visit-1", "Invoice 4411: amount due 120.00 for office visit."),
    ("MRN-3/visit-1", "Prior authorization request for MRI of the knee."),
]


@pytest.fixture
def app(
    audit_db: str, logins: Logins, fake_vllm: FakeVllm, key_files: Path, tmp_path: Path
) -> Iterator[Flask]:
    key = tmp_path / "pseudonym.key"
    key.write_bytes(b"k" * 32)
    settings = Settings(
        database_url=sqlalchemy_url(logins.url(audit_db, logins.app)),
        vllm_base_url=fake_vllm.url,
        database_pool_size=2,
        audit_verifier_key_path=key_files / "verifier.vkey",
        audit_pseudonym_key_path=key,
        audit_origin=ORIGIN,
    )
    with app_over(settings) as application:
        yield application


@pytest.fixture
def decided(
    app: Flask, audit_db: str, sealer_url: str, signer: Signer, state: SealerState
) -> dict[str, Any]:
    """Three classified documents, one of them reviewed, all sealed: ids by what they are."""
    client = app.test_client()
    client.environ_base[IDENTITY_ENVIRON_KEY] = identity("classifier", "reviewer")  # type: ignore[assignment]
    results = []
    for document_id, text in DOCUMENTS:
        answer = client.post(
            "/api/v1/classify-document", json={"document_id": document_id, "text": text}
        )
        assert answer.status_code == 200, answer.get_json()
        results.append(answer.get_json()["result_id"])
    review = client.post(f"/api/v1/classifications/{results[0]}/review", json={"label": "BILLING"})
    assert review.status_code == 201, review.get_json()
    seal_now(sealer_url, signer, state)
    return {"results": results, "review": review.get_json()["review_id"]}


def verify(logins: Logins, audit_db: str, key_files: Path, *extra: str) -> tuple[int, Any]:
    """``audit-tool verify --json`` as the auditor's login: (exit code, report)."""
    result = run(
        "verify", "--database-url", logins.url(audit_db, logins.auditor),
        "--public-key", str(key_files / "verifier.vkey"), "--json", *extra,
    )  # fmt: skip
    return result.exit_code, json.loads(result.stdout)


def as_superuser_without_triggers(url: str, *statements: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("SET session_replication_role = replica")
        for statement in statements:
            conn.execute(statement)


def seq_of(url: str, result_id: str, action: str = "classify_document") -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT seq FROM audit_entries WHERE result_id = %s AND action = %s",
            [result_id, action],
        ).fetchone()
    assert row is not None
    return int(row[0])


def findings(report: dict[str, Any]) -> list[tuple[str, int | None, str]]:
    return [(f["kind"], f["seq"], f["id"]) for f in report["tampering"]["findings"]]


def test_the_untouched_database_verifies_clean(
    decided: dict[str, Any], app: Flask, logins: Logins, audit_db: str, key_files: Path
) -> None:
    client = app.test_client()
    client.environ_base[IDENTITY_ENVIRON_KEY] = identity("classifier")  # type: ignore[assignment]
    refused = client.post("/api/v1/classify-document", json={"document_id": "MRN-4/visit-1"})
    assert refused.status_code == 400  # audited, still pending, naming no result
    code, report = verify(logins, audit_db, key_files)
    assert (code, report["status"]) == (0, "ok"), report
    assert report["cross_check"]["results"] == 3 and report["cross_check"]["reviews"] == 1
    assert report["cross_check"]["rows"] == report["entries"]
    assert report["cross_check"]["derived"] is True  # compared through migration 0015's columns


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE classification_results SET label = 'BILLING'",
        "DELETE FROM classification_reviews",
        "DELETE FROM classification_results WHERE id NOT IN"
        " (SELECT result_id FROM classification_reviews)",
        "TRUNCATE classification_results CASCADE",
        "UPDATE classification_reviews SET label = 'CLINICAL_NOTES'",
    ],
)
def test_the_application_role_cannot_change_a_decision(
    decided: dict[str, Any], logins: Logins, audit_db: str, statement: str
) -> None:
    with (
        psycopg.connect(logins.url(audit_db, logins.app)) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(statement)
    refused = pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only")
    with psycopg.connect(audit_db) as conn, refused:  # nor the owner, while the triggers stand
        conn.execute(statement)


def test_a_changed_label_is_named_with_its_result_and_event(
    decided: dict[str, Any], logins: Logins, audit_db: str, key_files: Path
) -> None:
    changed = decided["results"][1]
    as_superuser_without_triggers(
        audit_db, f"UPDATE classification_results SET {RELABEL} WHERE id = '{changed}'"
    )
    code, report = verify(logins, audit_db, key_files)
    assert (code, report["status"]) == (1, "tampered")
    assert findings(report) == [("result_modified", seq_of(audit_db, changed), changed)]
    assert verify(logins, audit_db, key_files, "--no-results")[0] == 0


def test_a_result_whose_event_is_still_pending_is_checked_too(
    decided: dict[str, Any], app: Flask, logins: Logins, audit_db: str, key_files: Path
) -> None:
    """Committed with its result, not sealed yet: the pending event is the log's word."""
    client = app.test_client()
    client.environ_base[IDENTITY_ENVIRON_KEY] = identity("classifier")  # type: ignore[assignment]
    body = {"document_id": "MRN-5/visit-1", "text": "Operative note: appendectomy, no issues."}
    fresh = client.post("/api/v1/classify-document", json=body).get_json()["result_id"]
    assert verify(logins, audit_db, key_files)[0] == 0
    as_superuser_without_triggers(
        audit_db, f"UPDATE classification_results SET {RELABEL} WHERE id = '{fresh}'"
    )
    code, report = verify(logins, audit_db, key_files)
    assert code == 1 and findings(report) == [("result_modified", None, fresh)]


CHANGES = ["confidence = confidence / 2", "model = 'other-model'", "prompt_version = NULL",
           "truncated = NOT truncated"]  # fmt: skip


@pytest.mark.parametrize("column", CHANGES)
def test_a_changed_confidence_model_or_version_is_named(
    decided: dict[str, Any], logins: Logins, audit_db: str, key_files: Path, column: str
) -> None:
    changed = decided["results"][2]
    as_superuser_without_triggers(
        audit_db, f"UPDATE classification_results SET {column} WHERE id = '{changed}'"
    )
    code, report = verify(logins, audit_db, key_files)
    assert code == 1
    assert findings(report) == [("result_modified", seq_of(audit_db, changed), changed)]


def test_a_deleted_and_an_inserted_result_are_named(
    decided: dict[str, Any], logins: Logins, audit_db: str, key_files: Path
) -> None:
    deleted, copied = decided["results"][2], decided["results"][1]
    forged = str(uuid.uuid4())
    as_superuser_without_triggers(
        audit_db,
        f"DELETE FROM classification_results WHERE id = '{deleted}'",
        _copy_result(audit_db, copied, forged),
    )
    code, report = verify(logins, audit_db, key_files)
    assert code == 1
    assert sorted(findings(report), key=str) == sorted(
        [("result_inserted", None, forged), ("result_deleted", seq_of(audit_db, deleted), deleted)],
        key=str,
    )


def _copy_result(url: str, source: str, new_id: str) -> str:
    """An INSERT of a copy of result ``source`` under ``new_id`` (a forged result)."""
    with psycopg.connect(url) as conn:
        columns = [
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'classification_results' AND column_name <> 'id'"
                " AND is_generated = 'NEVER'"
            )
        ]
    names = ", ".join(columns)
    return (
        f"INSERT INTO classification_results (id, {names})"
        f" SELECT '{new_id}', {names} FROM classification_results WHERE id = '{source}'"
    )


def test_a_changed_or_deleted_review_is_named(
    decided: dict[str, Any], logins: Logins, audit_db: str, key_files: Path
) -> None:
    review, reviewed = decided["review"], decided["results"][0]
    seq = seq_of(audit_db, reviewed, "review_classification")
    as_superuser_without_triggers(
        audit_db, f"UPDATE classification_reviews SET {RELABEL} WHERE id = '{review}'"
    )
    assert findings(verify(logins, audit_db, key_files)[1]) == [("review_modified", seq, review)]
    as_superuser_without_triggers(
        audit_db, f"DELETE FROM classification_reviews WHERE id = '{review}'"
    )
    assert findings(verify(logins, audit_db, key_files)[1]) == [("review_deleted", seq, review)]


def test_an_edited_search_column_is_tampering(
    decided: dict[str, Any], logins: Logins, audit_db: str, key_files: Path
) -> None:
    """Renaming the actor of one entry would hide the event from ``search --actor``."""
    seq = seq_of(audit_db, decided["results"][1])
    as_superuser_without_triggers(
        audit_db,
        f"UPDATE audit_entries SET actor = 'spiffe://hospital/svc/other' WHERE seq = {seq}",
    )
    code, report = verify(logins, audit_db, key_files, "--no-results")
    assert (code, report["tampering"]["kind"]) == (1, "columns_modified")
    assert findings(report) == [("columns_modified", seq, None)]
    assert "column actor" in report["tampering"]["detail"]


def test_results_and_events_from_before_the_decision_fields_verify_across_migrations(
    audit_db: str,
    logins: Logins,
    sealer_url: str,
    signer: Signer,
    state: SealerState,
    key_files: Path,
) -> None:
    """Version 1 events (no decision) and results without the new columns, as an existing
    install has them: the migrations go down and up with them in place, the result ids of the
    sealed rows come back from their bytes, and ``verify`` reads them as the older version."""
    ids = [uuid.uuid4() for _ in range(3)]
    with psycopg.connect(audit_db) as conn:
        for n, result_id in enumerate(ids):
            params = store.pending_params(make_event(n, result_id=str(result_id)))
            params["event"] = params["event"].replace(b'"v":2}', b'"v":1}')
            store_result(conn, result_id, 0.5, params)
    seal_now(sealer_url, signer, state)
    migrate.downgrade(sqlalchemy_url(audit_db), "0007_file_results")
    migrate.upgrade(sqlalchemy_url(audit_db))
    with psycopg.connect(audit_db) as conn:
        stored = conn.execute(
            "SELECT result_id FROM audit_entries WHERE result_id IS NOT NULL ORDER BY seq"
        ).fetchall()
        first = conn.execute("SELECT entry FROM audit_entries ORDER BY seq LIMIT 1").fetchone()
    assert [row[0] for row in stored] == ids
    assert first is not None and b'"v":1}' in bytes(first[0])
    code, report = verify(logins, audit_db, key_files)
    assert (code, report["status"]) == (0, "ok"), report
    assert report["cross_check"]["results"] == 3
    delete = f"DELETE FROM classification_results WHERE id = '{ids[1]}'"
    as_superuser_without_triggers(audit_db, delete)
    code, report = verify(logins, audit_db, key_files)
    assert code == 1 and [f[0] for f in findings(report)] == ["result_deleted"]


def test_values_postgresql_writes_otherwise_as_json_are_no_finding(
    audit_db: str,
    logins: Logins,
    sealer_url: str,
    signer: Signer,
    state: SealerState,
    key_files: Path,
) -> None:
    """A non-ASCII actor (escaped by the canonical bytes, not by ``to_json``) and a confidence
    of 1.0 (``1`` as PostgreSQL's text) fail the quick text search: decoded, they agree."""
    result_id = uuid.uuid4()
    decided = {"label": "BILLING", "confidence": "1.0", "model": "m", "taxonomy_version": "t",
               "truncated": False, "cached": False}  # fmt: skip
    event = make_event(0, result_id=str(result_id), actor_subject="CN=Zoë", **decided)
    with psycopg.connect(audit_db) as conn:
        store_result(conn, result_id, 1.0, store.pending_params(event))
    seal_now(sealer_url, signer, state)
    code, report = verify(logins, audit_db, key_files)
    assert (code, report["status"]) == (0, "ok"), report
    as_superuser_without_triggers(
        audit_db, "UPDATE audit_entries SET actor = 'CN=Zoe'", "UPDATE classification_results"
        " SET confidence = 0.99",
    )  # fmt: skip
    code, report = verify(logins, audit_db, key_files)
    assert code == 1
    assert [kind for kind, _, _ in findings(report)] == ["columns_modified", "result_modified"]


def store_result(
    conn: psycopg.Connection[Any], result_id: uuid.UUID, confidence: float, event: dict[str, Any]
) -> None:
    """A result (label BILLING, model m, taxonomy t) and its pending event, as written before."""
    conn.execute(
        "INSERT INTO classification_results (id, document_id, content_sha256, content_length,"
        " model, taxonomy_version, label, confidence, scores, needs_review, truncated)"
        " VALUES (%s, 'doc', %s, 10, 'm', 't', 'BILLING', %s, '{}', false, false)",
        [result_id, "ab" * 32, confidence],
    )
    conn.execute(store.INSERT_PENDING, event)


def seal_now(url: str, signer: Signer, state: SealerState) -> None:
    sealer = Sealer(url, signer, state)
    sealer.run_once()
    sealer.close()


def test_an_entry_sealed_by_the_previous_release_gets_its_result_id_from_its_bytes(
    audit_db: str,
) -> None:
    """During a rolling upgrade the old sealer, still running elsewhere, inserts entries
    without the column: the database fills it from the bytes, so verify finds no mismatch."""
    result_id = str(uuid.uuid4())
    entry = wrap(0, encode_event(make_event(0, result_id=result_id)))
    with psycopg.connect(audit_db) as conn:
        conn.execute(
            "INSERT INTO audit_entries (seq, event_id, entry, entry_hash, chain_hash,"
            " occurred_at, actor, action, resource, outcome_status)"
            " VALUES (0, gen_random_uuid(), %s, %s, %s, now(), NULL, 'classify_document',"
            " NULL, 200)",
            [entry, entry_hash(entry), chain_hash(bytes(32), entry_hash(entry))],
        )
        row = conn.execute("SELECT result_id::text FROM audit_entries WHERE seq = 0").fetchone()
    assert row == (result_id,)


def test_nobody_writes_a_derived_column(decided: dict[str, Any], audit_db: str) -> None:
    for statement in ("UPDATE audit_entries SET fields = '{}'",
                      "UPDATE classification_results SET decision = NULL"):  # fmt: skip
        with pytest.raises(psycopg.errors.GeneratedAlways):
            as_superuser_without_triggers(audit_db, statement)


def test_an_edit_behind_a_dropped_generation_is_still_found(
    decided: dict[str, Any], logins: Logins, audit_db: str, key_files: Path
) -> None:
    """The insider drops the generation expressions, edits an actor and a label, and copies
    what the derived columns said before into them: verify sees the catalog and reads bytes."""
    result = decided["results"][1]
    seq = seq_of(audit_db, result)
    as_superuser_without_triggers(
        audit_db,
        "ALTER TABLE audit_entries ALTER COLUMN fields DROP EXPRESSION",
        "ALTER TABLE classification_results ALTER COLUMN decision DROP EXPRESSION",
        f"UPDATE audit_entries SET actor = 'spiffe://hospital/svc/other',"
        f" fields = fields || '{{\"actor_subject\": \"spiffe://hospital/svc/other\"}}'"
        f" WHERE seq = {seq}",
        f"UPDATE classification_results SET {RELABEL} WHERE id = '{result}'",
    )
    with psycopg.connect(audit_db) as conn:
        assert derived(conn) == {("audit_entries", "decision")}
    code, report = verify(logins, audit_db, key_files)
    assert code == 1
    assert sorted(findings(report)) == [("columns_modified", seq, None),
                                        ("result_modified", seq, result)]  # fmt: skip


def test_the_report_says_when_the_derived_columns_were_not_used(
    decided: dict[str, Any], logins: Logins, audit_db: str, key_files: Path
) -> None:
    """A dropped generation with nothing edited is no tampering, but the auditor is told that
    the comparison went through the bytes, and why."""
    args = ("verify", "--database-url", logins.url(audit_db, logins.auditor),
            "--public-key", str(key_files / "verifier.vkey"))  # fmt: skip
    assert "(through the columns PostgreSQL derives from the entries)" in run(*args).stdout
    as_superuser_without_triggers(
        audit_db, "ALTER TABLE classification_results ALTER COLUMN decision DROP EXPRESSION"
    )
    shown = run(*args)
    assert shown.exit_code == 0, shown.output
    assert "the derived columns are not as migration 0015 made them" in shown.stdout
    assert verify(logins, audit_db, key_files)[1]["cross_check"]["derived"] is False


def test_the_results_are_merged_only_where_vacuum_has_marked_the_pages(
    decided: dict[str, Any], audit_db: str
) -> None:
    """Right after a restore or a bulk load (pages not yet all-visible) the index merge would
    read the tables too, so the check hashes instead; once vacuum has marked (nearly) every
    page, it merges. What vacuum last counted is in ``pg_class``, set here as it would."""
    tables = ("audit_entries", "classification_results")
    with psycopg.connect(audit_db, autocommit=True) as conn:
        for table in tables:
            conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
            conn.execute(f"ANALYZE {table}")  # counts the pages, marks none
        assert crosscheck._mostly_visible(conn) is False

        def counted(pages: int, visible: int) -> None:
            conn.execute(
                "UPDATE pg_class SET relpages = %s, relallvisible = %s"
                " WHERE oid = ANY(%s::regclass[])",
                [pages, visible, list(tables)],
            )

        counted(1000, 950)
        assert crosscheck._mostly_visible(conn) is True
        counted(1000, 500)
        assert crosscheck._mostly_visible(conn) is False
