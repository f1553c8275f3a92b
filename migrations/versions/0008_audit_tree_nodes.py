"""Audit log: the Merkle tree's stored nodes, so that proofs read O(log n) hashes.

Revision ID: 0008_audit_tree_nodes
Revises: 0007_file_results
Create Date: 2026-12-02

``audit_tree_nodes`` holds the hash of every perfect subtree at every fourth level (layout:
``audit/tree_nodes.py``), written by the sealer in each batch's transaction. Append-only like the
other sealed tables; the newest row of a (level, index) wins, so ``id`` is in the key. Upgrading
backfills the nodes of the log sealed so far, streaming its entry hashes in seq order (entries a
sealer of the previous release seals meanwhile are caught up by the new sealer). Nothing here is
trusted: proofs built from these rows still have to verify against the signed checkpoints.
"""

from __future__ import annotations

from alembic import op

from audit import store, tree_nodes

revision = "0008_audit_tree_nodes"
down_revision = "0007_file_results"
branch_labels = None
depends_on = None

UPGRADE = [
    """
    CREATE TABLE audit_tree_nodes (
        level smallint NOT NULL CONSTRAINT ck_audit_tree_nodes_level CHECK (level > 0),
        index bigint NOT NULL CONSTRAINT ck_audit_tree_nodes_index CHECK (index >= 0),
        hash bytea NOT NULL CONSTRAINT ck_audit_tree_nodes_hash CHECK (length(hash) = 32),
        id bigint GENERATED ALWAYS AS IDENTITY,
        CONSTRAINT pk_audit_tree_nodes PRIMARY KEY (level, index, id)
    )
    """,
    """
    CREATE TRIGGER tr_audit_tree_nodes_append_only BEFORE UPDATE OR DELETE ON audit_tree_nodes
        FOR EACH ROW EXECUTE FUNCTION audit_reject_change()
    """,
    """
    CREATE TRIGGER tr_audit_tree_nodes_no_truncate BEFORE TRUNCATE ON audit_tree_nodes
        FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change()
    """,
    "REVOKE ALL ON audit_tree_nodes FROM PUBLIC",
    "GRANT SELECT, INSERT ON audit_tree_nodes TO appliance_sealer",
    "GRANT SELECT ON audit_tree_nodes TO appliance_auditor, appliance_app",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)
    conn = op.get_bind().connection.dbapi_connection  # psycopg, in the migration's transaction
    head, _ = store.chain_head(conn)
    tree_nodes.fill(conn, head + 1)


def downgrade() -> None:
    op.execute("DROP TABLE audit_tree_nodes")
