"""The harness itself: the server answers and fresh databases are independent."""

from collections.abc import Callable

import psycopg


def test_fresh_databases_are_empty_and_distinct(create_database: Callable[..., str]) -> None:
    first, second = create_database(), create_database()
    assert first != second
    with psycopg.connect(first) as conn:
        conn.execute("CREATE TABLE marker (id int)")
    with psycopg.connect(second) as conn:
        found = conn.execute("SELECT to_regclass('public.marker')").fetchone()
    assert found == (None,)
