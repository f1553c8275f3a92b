"""What PostgreSQL derives from the signed bytes and the results' columns (the generated columns
of migration 0015), and whether it still does.

``audit_entries.fields`` holds each entry's search fields and ``audit_entries.decision`` a
digest of its decision, both computed from the bytes when the row was inserted;
``classification_results.decision`` the same digest from the result's columns. Nobody can write
a generated column; an insider who wants to must first drop its generation expression (or
replace it), and that is in the catalog. So the cross-checks compare these columns, a few
bytes per row, instead of parsing every entry, but only after ``derived`` has found all three
generated exactly as the migration made them (the digest of PostgreSQL's own text of each
expression); otherwise they read the bytes row by row, as before the migration.
"""

from __future__ import annotations

from typing import Any

import psycopg

GENERATED = {
    ("audit_entries", "fields"):
        "1324ecceb76722ac248a116436c654c233d2ed91d983cb3c3e96e1f43558e18b",
    ("audit_entries", "decision"):
        "9aa2e43eee634aa5787381caaadc41d38c2e93f7265373855b2a79f3ca04491c",
    ("classification_results", "decision"):
        "6aba22c3f3605973d312ee50f2108485efdbf2df4f03397e5922ebbeb22188b1",
}  # fmt: skip
"""SHA-256 (hex) of ``pg_get_expr`` of each generation expression, as PostgreSQL 15 writes it
for migration 0015 (``tests/audit/test_derived.py`` keeps them in step). Another server
version that writes an expression otherwise only costs the faster comparison."""

CATALOG = """
SELECT c.relname, a.attname,
       encode(sha256(convert_to(pg_get_expr(d.adbin, d.adrelid), 'UTF8')), 'hex')
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_attrdef d ON (d.adrelid, d.adnum) = (a.attrelid, a.attnum)
 WHERE a.attrelid IN (to_regclass('audit_entries'), to_regclass('classification_results'))
   AND a.attgenerated = 's' AND NOT a.attisdropped
"""


def generation_digests(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], str]:
    """The digest of every generated column's expression on the two tables, by (table, column)."""
    return {(table, column): digest for table, column, digest in conn.execute(CATALOG)}


def derived(conn: psycopg.Connection[Any]) -> frozenset[tuple[str, str]]:
    """The columns of ``GENERATED`` generated exactly as migration 0015 made them."""
    found = generation_digests(conn)
    return frozenset(column for column, digest in GENERATED.items() if found.get(column) == digest)


SEARCH_FIELDS = ("audit_entries", "fields")
DECISIONS = frozenset({("audit_entries", "decision"), ("classification_results", "decision")})


DECIDED_NOTHING = "sha256('{}'::bytea)"
"""``audit_entries.decision`` of an event without decision fields (version 1)."""
