"""Cascade stages: which stage answered each result, and the confidence of each stage asked.

Revision ID: 0014_cascade_stages
Revises: 0013_interactive_activity
Create Date: 2026-12-03

Existing rows (and rows written without a cascade) have NULL in both: one model answered. The
auditor's login reads ``stage``, which ``audit-tool verify`` compares with the events.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0014_cascade_stages"
down_revision = "0013_interactive_activity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("classification_results", sa.Column("stage", sa.String(64)))
    op.add_column("classification_results", sa.Column("stages", JSONB()))
    op.execute("GRANT SELECT (stage) ON classification_results TO appliance_auditor")


def downgrade() -> None:
    op.execute("REVOKE SELECT (stage) ON classification_results FROM appliance_auditor")
    op.drop_column("classification_results", "stages")
    op.drop_column("classification_results", "stage")
