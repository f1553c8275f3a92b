"""Migration 0002_audit: roles, grants, triggers; down and up again."""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from appliance import migrate
from harness.postgres import sqlalchemy_url

TABLES = {"audit_pending", "audit_entries", "audit_chain_head", "audit_checkpoints"}


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row[0] for row in rows}


def test_upgrade_down_to_core_and_up_again(create_database: Callable[..., str]) -> None:
    url = create_database()
    migrate.upgrade(sqlalchemy_url(url))
    assert _tables(url) >= TABLES
    migrate.downgrade(sqlalchemy_url(url), "0001_core")
    assert not TABLES & _tables(url)
    migrate.upgrade(sqlalchemy_url(url))  # roles already exist: creation is idempotent
    assert _tables(url) >= TABLES
    with psycopg.connect(url) as conn:
        roles = conn.execute(
            "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'appliance_%'"
        ).fetchall()
        head = conn.execute("SELECT seq, length(chain_hash) FROM audit_chain_head").fetchall()
        grants = conn.execute(
            "SELECT grantee, table_name, string_agg(privilege_type, ',' ORDER BY privilege_type)"
            " FROM information_schema.role_table_grants WHERE grantee LIKE 'appliance_%'"
            " GROUP BY grantee, table_name"
        ).fetchall()
    assert dict(roles) == {
        "appliance_app": False,
        "appliance_auditor": False,
        "appliance_sealer": False,
    }
    assert head == [(-1, 32)]
    granted = {(grantee, table): privileges for grantee, table, privileges in grants}
    assert granted[("appliance_app", "audit_pending")] == "INSERT,SELECT"
    assert granted[("appliance_app", "audit_entries")] == "SELECT"
    assert granted[("appliance_auditor", "audit_entries")] == "SELECT"
    assert granted[("appliance_sealer", "audit_entries")] == "INSERT,SELECT"
    assert granted[("appliance_sealer", "audit_pending")] == "DELETE,SELECT"
    assert granted[("appliance_sealer", "audit_chain_head")] == "SELECT,UPDATE"
    assert "UPDATE" not in granted[("appliance_app", "audit_entries")]
    assert ("appliance_auditor", "classification_results") not in granted
