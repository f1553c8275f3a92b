"""Usage and quotas: tokens and cost per result, quota windows, audited quota declarations.

Revision ID: 0012_usage_and_quotas
Revises: 0011_bulk_jobs
Create Date: 2026-12-03

- ``classification_results`` records the tokens its model calls consumed and their cost at the
  configured price (existing rows: NULL, counted before tokens were).
- ``quota_usage``: documents and tokens used per role rule (and member identity, or '' for a
  rule's shared budget) per UTC minute and day window. A reservation is one upsert of every
  window a request must fit, each row carrying the limits it is reserved under; CHECK
  constraints refuse a row over them, which fails the whole statement, so a request takes
  nothing unless it fits everywhere. The row locks of the upsert serialise concurrent requests
  across threads, processes and nodes: a budget cannot be overspent by racing. Settling (the
  real tokens, or a refund) clears the limits of the rows it corrects (only a reservation is
  checked against them) and locks the rows in the same order.
- A partial index of the results that need review: the review queue and its size metric.
- ``quota_declarations``: each distinct set of quotas the role table declared, in order, so a
  change is recorded (and audited) once however many processes start with it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_usage_and_quotas"
down_revision = "0011_bulk_jobs"
branch_labels = None
depends_on = None

TABLES = """
CREATE TABLE quota_usage (
    rule varchar(1024) NOT NULL,
    member varchar(512) NOT NULL,
    period varchar(8) NOT NULL CONSTRAINT ck_quota_usage_period
        CHECK (period IN ('minute', 'day')),
    window_start timestamptz NOT NULL,
    documents bigint NOT NULL,
    tokens bigint NOT NULL,
    max_documents bigint,
    max_tokens bigint,
    CONSTRAINT pk_quota_usage PRIMARY KEY (rule, member, period, window_start),
    CONSTRAINT ck_quota_usage_documents CHECK (documents <= max_documents),
    CONSTRAINT ck_quota_usage_tokens CHECK (tokens <= max_tokens)
);
CREATE TABLE quota_declarations (
    id bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT pk_quota_declarations PRIMARY KEY,
    digest varchar(64) NOT NULL,
    declared jsonb NOT NULL,
    declared_at timestamptz NOT NULL DEFAULT now()
);
"""

GRANTS = """
REVOKE ALL ON quota_usage, quota_declarations FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON quota_usage TO appliance_app;
GRANT SELECT, INSERT ON quota_declarations TO appliance_app;
"""


def upgrade() -> None:
    op.add_column("classification_results", sa.Column("prompt_tokens", sa.Integer()))
    op.add_column("classification_results", sa.Column("completion_tokens", sa.Integer()))
    op.add_column("classification_results", sa.Column("cost", sa.Float()))
    op.execute(TABLES)
    op.execute(GRANTS)
    op.execute(
        "CREATE INDEX ix_classification_results_review_queue"
        " ON classification_results (created_at, id) WHERE needs_review"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_classification_results_review_queue")
    op.execute("DROP TABLE quota_declarations")
    op.execute("DROP TABLE quota_usage")
    op.drop_column("classification_results", "cost")
    op.drop_column("classification_results", "completion_tokens")
    op.drop_column("classification_results", "prompt_tokens")
