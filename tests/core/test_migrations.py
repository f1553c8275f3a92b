"""Migrations on a real database: up, down, up again, and the models agree with them."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import create_engine, inspect

from appliance import migrate
from harness.postgres import sqlalchemy_url


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_and_models_match(create_database: Callable[..., str]) -> None:
    url = sqlalchemy_url(create_database())
    migrate.upgrade(url)
    assert "classification_results" in tables(url)
    migrate.check_models_match(url)
    engine = create_engine(url)
    assert migrate.is_at_head(engine)
    migrate.downgrade(url, "base")
    assert tables(url) <= {"alembic_version"}
    assert not migrate.is_at_head(engine)
    migrate.upgrade(url)
    migrate.check_models_match(url)
    assert migrate.is_at_head(engine)
    engine.dispose()
