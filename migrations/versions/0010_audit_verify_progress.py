"""Progress of the API's verification: full passes over the log, in bounded steps.

Revision ID: 0010_audit_verify_progress
Revises: 0009_decisions_on_record
Create Date: 2026-12-02

``POST /api/v1/audit/verify`` verifies at most a configured number of entries per request,
continuing the pass the previous request left off (from a signed checkpoint), and starts a new
pass from seq 0 once one has reached the head; each step appends a row here. Append-only; the
application may add rows (it runs the steps), auditors may read them. ``audit-tool verify``
does not use it: it always verifies the whole log.
"""

from __future__ import annotations

from alembic import op

revision = "0010_audit_verify_progress"
down_revision = "0009_decisions_on_record"
branch_labels = None
depends_on = None

TABLE = "audit_verify_progress"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE {TABLE} (
            id bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT pk_{TABLE} PRIMARY KEY,
            pass_started_at timestamptz NOT NULL,
            verified_size bigint NOT NULL CONSTRAINT ck_{TABLE}_size CHECK (verified_size >= 0),
            complete boolean NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        f"CREATE TRIGGER tr_{TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE}"
        " FOR EACH ROW EXECUTE FUNCTION audit_reject_change()"
    )
    op.execute(
        f"CREATE TRIGGER tr_{TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE}"
        " FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change()"
    )
    op.execute(f"REVOKE ALL ON {TABLE} FROM PUBLIC")
    op.execute(f"GRANT SELECT, INSERT ON {TABLE} TO appliance_app")
    op.execute(f"GRANT SELECT ON {TABLE} TO appliance_auditor")


def downgrade() -> None:
    op.execute(f"DROP TABLE {TABLE}")
