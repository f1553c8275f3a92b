"""Quarantine for pending audit rows the sealer cannot seal; the schema version readable by the
service roles.

Revision ID: 0004_audit_quarantine
Revises: 0003_reviews
Create Date: 2026-12-01

A pending row whose event is already sealed, or whose bytes are not a readable event, would stop
the sealer on every batch. The sealer moves such a row to ``audit_quarantine`` (append-only, like
the log) and seals an entry of its own saying so. ``alembic_version`` becomes readable by the
application, sealer and auditor roles: ``/health/startup`` checks the schema is at head, which
the least-privilege login must be able to see.
"""

from __future__ import annotations

from alembic import op

revision = "0004_audit_quarantine"
down_revision = "0003_reviews"
branch_labels = None
depends_on = None

UPGRADE = [
    """
    CREATE TABLE audit_quarantine (
        id bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT pk_audit_quarantine PRIMARY KEY,
        pending_id bigint NOT NULL,
        event_id uuid NOT NULL,
        event bytea NOT NULL,
        reason text NOT NULL,
        quarantined_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TRIGGER tr_audit_quarantine_append_only BEFORE UPDATE OR DELETE ON audit_quarantine
        FOR EACH ROW EXECUTE FUNCTION audit_reject_change()
    """,
    """
    CREATE TRIGGER tr_audit_quarantine_no_truncate BEFORE TRUNCATE ON audit_quarantine
        FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change()
    """,
    "REVOKE ALL ON audit_quarantine FROM PUBLIC",
    "GRANT SELECT, INSERT ON audit_quarantine TO appliance_sealer",
    "GRANT SELECT ON audit_quarantine TO appliance_auditor",
    "GRANT SELECT ON alembic_version TO appliance_app, appliance_sealer, appliance_auditor",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    op.execute(
        "REVOKE SELECT ON alembic_version FROM appliance_app, appliance_sealer, appliance_auditor"
    )
    op.execute("DROP TABLE audit_quarantine")
