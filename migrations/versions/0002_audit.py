"""Audit log: pending events, sealed entries, chain head, signed checkpoints; roles and grants.

Revision ID: 0002_audit
Revises: 0001_core
Create Date: 2026-11-22

Writers insert into ``audit_pending`` (lock-free, in the request's transaction). One sealer moves
events into ``audit_entries`` with contiguous ``seq``, entry and chain hashes, updates the single
row of ``audit_chain_head`` (its ``FOR UPDATE`` lock fences sealers) and appends signed
checkpoints to ``audit_checkpoints``. Triggers reject UPDATE, DELETE and TRUNCATE on the sealed
tables and UPDATE on pending events; superusers can still bypass triggers, which is why integrity
rests on the hashes and the signed checkpoints kept outside the database.

The roles ``appliance_app``, ``appliance_auditor`` and ``appliance_sealer`` are NOLOGIN groups,
created if missing (roles are cluster-wide, so downgrade leaves them in place).
"""

from __future__ import annotations

from alembic import op

revision = "0002_audit"
down_revision = "0001_core"
branch_labels = None
depends_on = None

ROLES = ("appliance_app", "appliance_auditor", "appliance_sealer")
TABLES = ("audit_pending", "audit_entries", "audit_chain_head", "audit_checkpoints")

CREATE_ROLE = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{role}') THEN
        CREATE ROLE {role} NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created concurrently by a migration of another database in this cluster
END
$$
"""

SCHEMA = [
    """
    CREATE TABLE audit_pending (
        id bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT pk_audit_pending PRIMARY KEY,
        event_id uuid NOT NULL CONSTRAINT uq_audit_pending_event_id UNIQUE,
        event bytea NOT NULL,
        occurred_at timestamptz NOT NULL,
        actor text,
        action text NOT NULL,
        resource text,
        outcome_status integer NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE audit_entries (
        seq bigint CONSTRAINT pk_audit_entries PRIMARY KEY
            CONSTRAINT ck_audit_entries_seq CHECK (seq >= 0),
        event_id uuid NOT NULL CONSTRAINT uq_audit_entries_event_id UNIQUE,
        entry bytea NOT NULL,
        entry_hash bytea NOT NULL
            CONSTRAINT ck_audit_entries_entry_hash CHECK (length(entry_hash) = 32),
        chain_hash bytea NOT NULL
            CONSTRAINT ck_audit_entries_chain_hash CHECK (length(chain_hash) = 32),
        occurred_at timestamptz NOT NULL,
        actor text,
        action text NOT NULL,
        resource text,
        outcome_status integer NOT NULL,
        sealed_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX ix_audit_entries_occurred_at ON audit_entries (occurred_at)",
    "CREATE INDEX ix_audit_entries_actor ON audit_entries (actor, seq)",
    "CREATE INDEX ix_audit_entries_resource ON audit_entries (resource, seq)",
    "CREATE INDEX ix_audit_entries_action ON audit_entries (action, seq)",
    """
    CREATE TABLE audit_chain_head (
        id smallint CONSTRAINT pk_audit_chain_head PRIMARY KEY
            CONSTRAINT ck_audit_chain_head_single CHECK (id = 1),
        seq bigint NOT NULL,
        chain_hash bytea NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "INSERT INTO audit_chain_head (id, seq, chain_hash)"
    " VALUES (1, -1, decode(repeat('00', 32), 'hex'))",
    """
    CREATE TABLE audit_checkpoints (
        size bigint CONSTRAINT pk_audit_checkpoints PRIMARY KEY
            CONSTRAINT ck_audit_checkpoints_size CHECK (size >= 0),
        root bytea NOT NULL,
        note text NOT NULL,
        compact_range bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE FUNCTION audit_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the audit log is append-only (% on % rejected)', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END
    $$
    """,
    """
    CREATE TRIGGER tr_audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries
        FOR EACH ROW EXECUTE FUNCTION audit_reject_change()
    """,
    """
    CREATE TRIGGER tr_audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
        FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change()
    """,
    """
    CREATE TRIGGER tr_audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
        FOR EACH ROW EXECUTE FUNCTION audit_reject_change()
    """,
    """
    CREATE TRIGGER tr_audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
        FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change()
    """,
    """
    CREATE TRIGGER tr_audit_pending_immutable BEFORE UPDATE ON audit_pending
        FOR EACH ROW EXECUTE FUNCTION audit_reject_change()
    """,
    """
    CREATE TRIGGER tr_audit_chain_head_no_delete BEFORE DELETE ON audit_chain_head
        FOR EACH ROW EXECUTE FUNCTION audit_reject_change()
    """,
    """
    CREATE TRIGGER tr_audit_chain_head_no_truncate BEFORE TRUNCATE ON audit_chain_head
        FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change()
    """,
]

GRANTS = [
    *(f"REVOKE ALL ON {table} FROM PUBLIC" for table in TABLES),
    "GRANT SELECT, INSERT ON audit_pending TO appliance_app",
    "GRANT SELECT ON audit_entries, audit_chain_head, audit_checkpoints TO appliance_app",
    "GRANT SELECT ON audit_pending, audit_entries, audit_chain_head, audit_checkpoints"
    " TO appliance_auditor",
    "GRANT SELECT, DELETE ON audit_pending TO appliance_sealer",
    "GRANT SELECT, INSERT ON audit_entries, audit_checkpoints TO appliance_sealer",
    "GRANT SELECT, UPDATE ON audit_chain_head TO appliance_sealer",
    # The result tables of 0001_core: the application's DML (no TRUNCATE, no DDL).
    "GRANT SELECT, INSERT, UPDATE, DELETE ON classification_results TO appliance_app",
]


def upgrade() -> None:
    for role in ROLES:
        op.execute(CREATE_ROLE.format(role=role))
    for statement in (*SCHEMA, *GRANTS):
        op.execute(statement)


def downgrade() -> None:
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("DROP FUNCTION IF EXISTS audit_reject_change()")
