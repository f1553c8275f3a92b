"""Results of classified files: the file's facts, its pages and its segments.

Revision ID: 0007_file_results
Revises: 0006_labeller_fingerprint
Create Date: 2026-12-02

``POST /api/v1/classify-file`` stores one result per file, as for text, plus what the file was
(SHA-256, size, media type, page count), how it was read (mode, and a fingerprint of the reading
settings, part of the dedupe key), each page's text source and text hash, and the segments
(page ranges with a label each). Never the file or its text.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007_file_results"
down_revision = "0006_labeller_fingerprint"
branch_labels = None
depends_on = None

TABLE = "classification_results"
INDEX = "ix_classification_results_file_key"
COLUMNS = (
    ("file_sha256", sa.String(64)),
    ("file_size", sa.BigInteger()),
    ("file_media_type", sa.String(128)),
    ("page_count", sa.Integer()),
    ("file_mode", sa.String(16)),
    ("intake_fingerprint", sa.String(64)),
    ("pages", postgresql.JSONB()),
    ("segments", postgresql.JSONB()),
)


def upgrade() -> None:
    for name, kind in COLUMNS:
        op.add_column(TABLE, sa.Column(name, kind, nullable=True))
    key = ["file_sha256", "intake_fingerprint", "labeller_fingerprint", "taxonomy_version"]
    op.create_index(INDEX, TABLE, key)


def downgrade() -> None:
    op.drop_index(INDEX, table_name=TABLE)
    for name, _ in reversed(COLUMNS):
        op.drop_column(TABLE, name)
