"""The dedupe key holds everything that shapes an answer, not only the served model's name.

Revision ID: 0006_labeller_fingerprint
Revises: 0005_audit_cosignatures
Create Date: 2026-12-02

A stored result was reused for the same content under the same served model name and taxonomy,
so a new prompt, new decoding settings or swapped weights under the same name kept serving old
answers as ``cached``. ``labeller_fingerprint`` (``Labeller.fingerprint``) records the model
call that produced each label; results stored before it stay NULL and are never reused.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_labeller_fingerprint"
down_revision = "0005_audit_cosignatures"
branch_labels = None
depends_on = None

TABLE = "classification_results"
INDEX = "ix_classification_results_content_key"


def upgrade() -> None:
    op.add_column(TABLE, sa.Column("labeller_fingerprint", sa.String(64), nullable=True))
    op.drop_index(INDEX, table_name=TABLE)
    op.create_index(INDEX, TABLE, ["content_sha256", "labeller_fingerprint", "taxonomy_version"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name=TABLE)
    op.create_index(INDEX, TABLE, ["content_sha256", "model", "taxonomy_version"])
    op.drop_column(TABLE, "labeller_fingerprint")
