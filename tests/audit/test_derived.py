"""The derived audit fields (migration 0015) are what the cross-checks expect: every event field
is either kept or left out of them, and each column is generated as ``audit.derived`` checks.
(That nobody writes them, and that an edit behind a dropped generation is still found:
``test_records_tamper.py``.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import psycopg

from audit.chain import DECISION_FIELDS, KNOWN_FIELDS
from audit.crosscheck import CLASSIFYING, DECISION
from audit.derived import GENERATED, derived, generation_digests
from audit.store import SEARCH_COLUMNS

MIGRATION = Path(__file__).parents[2] / "migrations/versions/0015_derived_audit_fields.py"
COMPARED = set(DECISION)
"""What the results cross-check compares of a decision."""


def migration() -> Any:
    spec = importlib.util.spec_from_file_location("derived_migration", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_key_lists_name_every_event_field() -> None:
    """An event field added without a new migration would land in ``fields`` and in every
    event's decision digest (and so send every pair to the exact comparison)."""
    made = migration()
    assert set(made.NOT_SEARCH) == KNOWN_FIELDS - set(SEARCH_COLUMNS.values())
    assert set(made.NOT_DECISION) == KNOWN_FIELDS - COMPARED
    assert set(DECISION_FIELDS) >= COMPARED
    assert made.CLASSIFYING == CLASSIFYING  # the partial index serves the cross-check's scan


def test_the_columns_are_generated_as_the_checks_expect(audit_db: str) -> None:
    with psycopg.connect(audit_db) as conn:
        found = generation_digests(conn)
        assert {column: found.get(column) for column in GENERATED} == GENERATED
        assert derived(conn) == frozenset(GENERATED)
