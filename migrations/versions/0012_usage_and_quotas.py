"""Usage and quotas: tokens and cost per result, quota windows, audited quota declarations.

Revision ID: 0012_usage_and_quotas
Revises: 0011_bulk_jobs
Create Date: 2026-12-03

- ``classification_results`` records the tokens its model calls consumed and their cost at the
  configured price (existing rows: NULL, counted before tokens were).
- ``quota_usage``: documents and tokens used per role rule (and member identity, or '' for a
  rule's shared budget) per UTC minute and day window. ``quota_reserve`` adds a request's
  documents and estimated tokens to every window it must fit, in one statement, and takes
  nothing when any of them would overflow (returning which): the row locks of the upserts
  serialise concurrent requests across threads, processes and nodes, so a budget cannot be
  overspent by racing. Settling (the real tokens, or a refund) is a plain UPDATE.
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
    CONSTRAINT pk_quota_usage PRIMARY KEY (rule, member, period, window_start)
);
CREATE TABLE quota_declarations (
    id bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT pk_quota_declarations PRIMARY KEY,
    digest varchar(64) NOT NULL,
    declared jsonb NOT NULL,
    declared_at timestamptz NOT NULL DEFAULT now()
);
"""

RESERVE = """
CREATE FUNCTION quota_reserve(
    rules text[], members text[], periods text[], starts timestamptz[],
    max_documents bigint[], max_tokens bigint[], documents bigint, tokens bigint
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    failed integer := 0;
    used_documents bigint;
    used_tokens bigint;
    inserted boolean;
BEGIN
    BEGIN
        FOR i IN 1 .. coalesce(array_length(rules, 1), 0) LOOP
            INSERT INTO quota_usage AS u (rule, member, period, window_start, documents, tokens)
            VALUES (rules[i], members[i], periods[i], starts[i], documents, tokens)
            ON CONFLICT (rule, member, period, window_start) DO UPDATE
                SET documents = u.documents + EXCLUDED.documents,
                    tokens = u.tokens + EXCLUDED.tokens
            RETURNING u.documents, u.tokens, u.xmax = 0
                INTO used_documents, used_tokens, inserted;
            IF used_documents > max_documents[i] THEN
                failed := i;
            ELSIF used_tokens > max_tokens[i] THEN
                failed := -i;
            END IF;
            IF failed <> 0 THEN
                RAISE EXCEPTION 'over quota' USING ERRCODE = 'P0001';
            END IF;
            IF inserted AND periods[i] = 'day' THEN
                DELETE FROM quota_usage
                 WHERE rule = rules[i] AND member = members[i]
                   AND window_start < starts[i] - interval '1 day';
            END IF;
        END LOOP;
    EXCEPTION WHEN raise_exception THEN
        RETURN failed;
    END;
    RETURN 0;
END
$$
"""
"""0: reserved in every window. i > 0: window i (1-based) has no room for the documents,
i < 0: window -i has none for the tokens; then nothing was reserved anywhere (the block's
subtransaction is rolled back). A day window's first reservation drops that budget's windows
older than yesterday."""

GRANTS = """
REVOKE ALL ON quota_usage, quota_declarations FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON quota_usage TO appliance_app;
GRANT SELECT, INSERT ON quota_declarations TO appliance_app;
REVOKE ALL ON FUNCTION quota_reserve(text[], text[], text[], timestamptz[], bigint[], bigint[],
    bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_reserve(text[], text[], text[], timestamptz[], bigint[],
    bigint[], bigint, bigint) TO appliance_app;
"""


def upgrade() -> None:
    op.add_column("classification_results", sa.Column("prompt_tokens", sa.Integer()))
    op.add_column("classification_results", sa.Column("completion_tokens", sa.Integer()))
    op.add_column("classification_results", sa.Column("cost", sa.Float()))
    op.execute(TABLES)
    op.execute(RESERVE)
    op.execute(GRANTS)
    op.execute(
        "CREATE INDEX ix_classification_results_review_queue"
        " ON classification_results (created_at, id) WHERE needs_review"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_classification_results_review_queue")
    op.execute(
        "DROP FUNCTION quota_reserve(text[], text[], text[], timestamptz[], bigint[], bigint[],"
        " bigint, bigint)"
    )
    op.execute("DROP TABLE quota_declarations")
    op.execute("DROP TABLE quota_usage")
    op.drop_column("classification_results", "cost")
    op.drop_column("classification_results", "completion_tokens")
    op.drop_column("classification_results", "prompt_tokens")
