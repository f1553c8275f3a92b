"""Decisions on record: results and reviews append-only, the model's versions stored, and each
sealed entry's result id searchable.

Revision ID: 0009_decisions_on_record
Revises: 0008_audit_tree_nodes
Create Date: 2026-12-02

- ``classification_results`` and ``classification_reviews`` become append-only for the
  application: no UPDATE or DELETE grant, and triggers that reject UPDATE, DELETE and TRUNCATE
  from anyone (corrections are reviews). Only a superuser disabling triggers can change them,
  and ``audit-tool verify`` cross-checks them against the signed log.
- Results record ``model_digest`` and ``prompt_version``, which their audit events carry too.
- ``audit_entries.result_id`` (a search column like ``actor``, taken by the sealer from the
  hashed bytes and checked against them by ``verify``) finds a result's events: receipts and
  the results cross-check. Existing entries get it from their bytes here (their hashed bytes
  are not touched), and so does an entry the previous release's sealer inserts during a rolling
  upgrade (a trigger).
- The auditor role may read the results' decision columns (not the document ids).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009_decisions_on_record"
down_revision = "0008_audit_tree_nodes"
branch_labels = None
depends_on = None

APPEND_ONLY = ("classification_results", "classification_reviews")
AUDITOR_COLUMNS = (
    "(id, label, confidence, model, model_digest, prompt_version, taxonomy_version, truncated,"
    " cached_from, created_at) ON classification_results"
)
"""What ``audit-tool verify`` compares with the log; the document ids stay unreadable to it."""

REJECT = """
CREATE FUNCTION appliance_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (% rejected; a correction is a review)',
        TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$
"""

FILL_RESULT_ID = """
CREATE FUNCTION audit_entry_result_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.result_id IS NULL AND position('"result_id":"'::bytea in NEW.entry) > 0 THEN
        NEW.result_id := (convert_from(NEW.entry, 'UTF8')::jsonb -> 'event' ->> 'result_id')::uuid;
    END IF;
    RETURN NEW;
END
$$
"""
"""An entry sealed without its result id column (by the previous release's sealer, still
running on another host during a rolling upgrade) gets it from its bytes, so the column never
disagrees with them; the new sealer sets it itself (then this only looks)."""

RESULT_ID_FROM_BYTES = """
UPDATE audit_entries
   SET result_id = (convert_from(entry, 'UTF8')::jsonb -> 'event' ->> 'result_id')::uuid
 WHERE convert_from(entry, 'UTF8')::jsonb -> 'event' ->> 'result_id' IS NOT NULL
"""


def upgrade() -> None:
    op.add_column("classification_results", sa.Column("model_digest", sa.String(80)))
    op.add_column("classification_results", sa.Column("prompt_version", sa.String(64)))
    op.add_column("audit_entries", sa.Column("result_id", postgresql.UUID(as_uuid=True)))
    op.execute("ALTER TABLE audit_entries DISABLE TRIGGER tr_audit_entries_append_only")
    op.execute(RESULT_ID_FROM_BYTES)
    op.execute("ALTER TABLE audit_entries ENABLE TRIGGER tr_audit_entries_append_only")
    op.execute(
        "CREATE INDEX ix_audit_entries_result_id ON audit_entries (result_id, seq)"
        " WHERE result_id IS NOT NULL"
    )
    op.execute(FILL_RESULT_ID)
    op.execute(
        "CREATE TRIGGER tr_audit_entries_result_id BEFORE INSERT ON audit_entries"
        " FOR EACH ROW EXECUTE FUNCTION audit_entry_result_id()"
    )
    op.execute(REJECT)
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER tr_{table}_append_only BEFORE UPDATE OR DELETE ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION appliance_reject_change()"
        )
        op.execute(
            f"CREATE TRIGGER tr_{table}_no_truncate BEFORE TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION appliance_reject_change()"
        )
    op.execute("REVOKE UPDATE, DELETE ON classification_results FROM appliance_app")
    op.execute(f"GRANT SELECT {AUDITOR_COLUMNS} TO appliance_auditor")


def downgrade() -> None:
    op.execute(f"REVOKE SELECT {AUDITOR_COLUMNS} FROM appliance_auditor")  # noqa: S608
    op.execute("GRANT UPDATE, DELETE ON classification_results TO appliance_app")
    for table in APPEND_ONLY:
        op.execute(f"DROP TRIGGER tr_{table}_no_truncate ON {table}")
        op.execute(f"DROP TRIGGER tr_{table}_append_only ON {table}")
    op.execute("DROP FUNCTION appliance_reject_change()")
    op.execute("DROP TRIGGER tr_audit_entries_result_id ON audit_entries")
    op.execute("DROP FUNCTION audit_entry_result_id()")
    op.execute("DROP INDEX ix_audit_entries_result_id")
    op.drop_column("audit_entries", "result_id")
    op.drop_column("classification_results", "prompt_version")
    op.drop_column("classification_results", "model_digest")
