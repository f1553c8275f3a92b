"""Interactive activity: when each API process last had a classification in flight.

Revision ID: 0013_interactive_activity
Revises: 0012_usage_and_quotas
Create Date: 2026-12-03

Bulk job workers read the newest stamp and hold back their model calls while the API is busy
(``appliance.jobs.yielding``): one row per API process, stamped at most every 0.2 s.
"""

from __future__ import annotations

from alembic import op

revision = "0013_interactive_activity"
down_revision = "0012_usage_and_quotas"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE TABLE interactive_activity ("
        " process varchar(300) CONSTRAINT pk_interactive_activity PRIMARY KEY,"
        " seen_at timestamptz NOT NULL)"
    )
    op.execute("REVOKE ALL ON interactive_activity FROM PUBLIC")
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON interactive_activity TO appliance_app")


def downgrade() -> None:
    op.execute("DROP TABLE interactive_activity")
