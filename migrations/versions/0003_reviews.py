"""Human reviews of classification results (append-only for the application role).

Revision ID: 0003_reviews
Revises: 0002_audit
Create Date: 2026-11-22

A review adds a human label next to the model's result and never changes it, so the
application role may only INSERT and SELECT reviews; auditors may read them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003_reviews"
down_revision = "0002_audit"
branch_labels = None
depends_on = None

TABLE = "classification_reviews"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("result_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("document_id", sa.String(length=256), nullable=False),
        sa.Column("label", sa.String(length=128), nullable=False),
        sa.Column("taxonomy_version", sa.String(length=80), nullable=False),
        sa.Column("reviewer", sa.String(length=512), nullable=False),
        sa.Column("note", sa.String(length=2000), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["classification_results.id"],
            name=op.f("fk_classification_reviews_result_id_classification_results"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_classification_reviews")),
    )
    op.create_index("ix_classification_reviews_result_id", TABLE, ["result_id"])
    op.create_index(
        "ix_classification_reviews_document_id_created_at", TABLE, ["document_id", "created_at"]
    )
    op.execute(f"REVOKE ALL ON {TABLE} FROM PUBLIC")
    op.execute(f"GRANT SELECT, INSERT ON {TABLE} TO appliance_app")
    op.execute(f"GRANT SELECT ON {TABLE} TO appliance_auditor")


def downgrade() -> None:
    op.drop_index("ix_classification_reviews_document_id_created_at", table_name=TABLE)
    op.drop_index("ix_classification_reviews_result_id", table_name=TABLE)
    op.drop_table(TABLE)
