"""Bulk jobs: the jobs and their items, and procrastinate's queue schema.

Revision ID: 0011_bulk_jobs
Revises: 0010_audit_verify_progress
Create Date: 2026-12-02

- ``bulk_jobs``: one row per submitted job, owned by the identity that submitted it, with its
  data key wrapped by the key-encryption key file (``APPLIANCE_JOB_KEY_PATH``): the database
  alone cannot decrypt the items.
- ``job_items``: one row per JSON Lines item, its text AES-GCM encrypted until the item is done
  (the ciphertext is cleared in the transaction that stores the item's result and audit event).
- procrastinate's schema (tables, types, functions and triggers in ``public``), from the
  installed procrastinate of the version this revision was written for: a later procrastinate
  comes with its own schema delta, applied by a later revision.

The application role writes jobs and items (the API submits and cancels, the workers, which run
as the same role because they store results and audit events as the API does, process them) and
runs procrastinate's queue. Nothing is granted to the auditor role: auditors read jobs through
the API.
"""

from __future__ import annotations

import procrastinate
from alembic import op
from procrastinate.schema import SchemaManager

revision = "0011_bulk_jobs"
down_revision = "0010_audit_verify_progress"
branch_labels = None
depends_on = None

PROCRASTINATE_SERIES = "3.10."
"""The procrastinate whose schema this revision applies (pyproject pins the same series)."""

TABLES = """
CREATE TABLE bulk_jobs (
    id uuid CONSTRAINT pk_bulk_jobs PRIMARY KEY,
    owner varchar(512) NOT NULL,
    owner_fingerprint varchar(64) NOT NULL,
    idempotency_key varchar(256),
    request_sha256 varchar(64) NOT NULL,
    total_items integer NOT NULL CONSTRAINT ck_bulk_jobs_total CHECK (total_items > 0),
    wrapped_key bytea NOT NULL,
    callback_url varchar(2048),
    created_at timestamptz NOT NULL DEFAULT now(),
    cancelled_at timestamptz,
    finished_at timestamptz,
    CONSTRAINT uq_bulk_jobs_owner_idempotency_key UNIQUE (owner, idempotency_key)
);
CREATE TABLE job_items (
    job_id uuid NOT NULL CONSTRAINT fk_job_items_job_id_bulk_jobs REFERENCES bulk_jobs (id),
    position integer NOT NULL,
    document_id varchar(256),
    on_behalf_of varchar(256),
    ciphertext bytea,
    state varchar(16) NOT NULL DEFAULT 'pending' CONSTRAINT ck_job_items_state
        CHECK (state IN ('pending', 'done', 'failed', 'cancelled')),
    result_id uuid CONSTRAINT fk_job_items_result_id_classification_results
        REFERENCES classification_results (id),
    error_code varchar(64),
    error_message varchar(1024),
    finished_at timestamptz,
    CONSTRAINT pk_job_items PRIMARY KEY (job_id, position),
    CONSTRAINT ck_job_items_text_until_done CHECK (state = 'pending' OR ciphertext IS NULL)
);
CREATE INDEX ix_job_items_job_id_state ON job_items (job_id, state);
"""

GRANTS = """
REVOKE ALL ON bulk_jobs, job_items FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON bulk_jobs, job_items TO appliance_app;
"""

PROCRASTINATE_OBJECTS = """
SELECT 'TABLE', c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname LIKE 'procrastinate\\_%%'
UNION ALL
SELECT 'SEQUENCE', c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind = 'S' AND c.relname LIKE 'procrastinate\\_%%'
"""


def upgrade() -> None:
    if not procrastinate.__version__.startswith(PROCRASTINATE_SERIES):
        raise RuntimeError(
            f"this revision applies procrastinate {PROCRASTINATE_SERIES}x's schema; installed is"
            f" {procrastinate.__version__}"
        )
    op.execute(TABLES)
    op.execute(GRANTS)
    bind = op.get_bind()
    # On psycopg itself, without parameters: the SQL is sent as written (it holds '%' signs).
    bind.connection.driver_connection.execute(SchemaManager.get_schema())
    for kind, name in bind.exec_driver_sql(PROCRASTINATE_OBJECTS).all():
        op.execute(f"REVOKE ALL ON {kind} {name} FROM PUBLIC")
        privileges = "SELECT, INSERT, UPDATE, DELETE" if kind == "TABLE" else "USAGE, SELECT"
        op.execute(f"GRANT {privileges} ON {kind} {name} TO appliance_app")


PROCRASTINATE_ROUTINES_AND_TYPES = """
SELECT 'FUNCTION', p.oid::regprocedure::text FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'public' AND p.proname LIKE 'procrastinate\\_%%'
UNION ALL
SELECT 'TYPE', quote_ident(t.typname) FROM pg_type t
  JOIN pg_namespace n ON n.oid = t.typnamespace
  LEFT JOIN pg_class c ON c.oid = t.typrelid
 WHERE n.nspname = 'public' AND t.typname LIKE 'procrastinate\\_%%'
   AND (t.typtype = 'e' OR c.relkind = 'c')
"""
"""procrastinate's functions and its own types (enums, composites), once its tables are gone."""


def downgrade() -> None:
    op.execute("DROP TABLE job_items, bulk_jobs")
    bind = op.get_bind()
    for kind, name in bind.exec_driver_sql(PROCRASTINATE_OBJECTS).all():
        if kind == "TABLE":
            op.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
    for kind, name in bind.exec_driver_sql(PROCRASTINATE_ROUTINES_AND_TYPES).all():
        op.execute(f"DROP {kind} IF EXISTS {name} CASCADE")
