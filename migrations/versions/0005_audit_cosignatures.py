"""Witness cosignatures of the audit log's checkpoints.

Revision ID: 0005_audit_cosignatures
Revises: 0004_audit_quarantine
Create Date: 2026-12-01

The sealer submits each checkpoint to the configured witnesses (C2SP tlog-witness) and stores
each cosignature line it gets back here, append-only. ``audit-tool verify --witness`` reads them.
"""

from __future__ import annotations

from alembic import op

revision = "0005_audit_cosignatures"
down_revision = "0004_audit_quarantine"
branch_labels = None
depends_on = None

UPGRADE = [
    """
    CREATE TABLE audit_cosignatures (
        id bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT pk_audit_cosignatures PRIMARY KEY,
        size bigint NOT NULL,  -- the size of the checkpoint it cosigns
        witness text NOT NULL,
        signature text NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT uq_audit_cosignatures_size_witness UNIQUE (size, witness)
    )
    """,
    """
    CREATE TRIGGER tr_audit_cosignatures_append_only BEFORE UPDATE OR DELETE ON audit_cosignatures
        FOR EACH ROW EXECUTE FUNCTION audit_reject_change()
    """,
    """
    CREATE TRIGGER tr_audit_cosignatures_no_truncate BEFORE TRUNCATE ON audit_cosignatures
        FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change()
    """,
    "REVOKE ALL ON audit_cosignatures FROM PUBLIC",
    "GRANT SELECT, INSERT ON audit_cosignatures TO appliance_sealer",
    "GRANT SELECT ON audit_cosignatures TO appliance_auditor, appliance_app",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE audit_cosignatures")
