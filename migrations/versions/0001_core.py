"""Classification results.

Revision ID: 0001_core
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001_core"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "classification_results",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("document_id", sa.String(length=256), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("content_length", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("taxonomy_version", sa.String(length=80), nullable=False),
        sa.Column("label", sa.String(length=128), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("scores", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("needs_review", sa.Boolean(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("cached_from", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("requested_by", sa.String(length=512), nullable=True),
        sa.Column("on_behalf_of", sa.String(length=256), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["cached_from"],
            ["classification_results.id"],
            name=op.f("fk_classification_results_cached_from_classification_results"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_classification_results")),
    )
    op.create_index(
        "ix_classification_results_content_key",
        "classification_results",
        ["content_sha256", "model", "taxonomy_version"],
    )
    op.create_index(
        "ix_classification_results_document_id_created_at",
        "classification_results",
        ["document_id", "created_at"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_classification_results_document_id_created_at", table_name="classification_results"
    )
    op.drop_index("ix_classification_results_content_key", table_name="classification_results")
    op.drop_table("classification_results")
