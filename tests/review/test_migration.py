"""Migration 0003: the review table matches its model, grants are append-only, and it goes away."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import create_engine, inspect, text

from appliance import migrate
from appliance.db import Base
from appliance.review import models
from harness.postgres import sqlalchemy_url


def test_reviews_migration_matches_model_and_round_trips(
    create_database: Callable[..., str],
) -> None:
    assert models.ClassificationReview.__tablename__ in Base.metadata.tables  # compared by check
    url = sqlalchemy_url(create_database())
    migrate.upgrade(url)
    migrate.check_models_match(url)
    engine = create_engine(url)
    try:
        assert "classification_reviews" in inspect(engine).get_table_names()
        with engine.connect() as connection:
            privilege = "SELECT has_table_privilege(:role, 'classification_reviews', :what)"
            allowed = {
                (role, what): connection.scalar(text(privilege), {"role": role, "what": what})
                for role in ("appliance_app", "appliance_auditor")
                for what in ("SELECT", "INSERT", "UPDATE", "DELETE")
            }
        assert allowed == {
            ("appliance_app", "SELECT"): True,
            ("appliance_app", "INSERT"): True,
            ("appliance_app", "UPDATE"): False,
            ("appliance_app", "DELETE"): False,
            ("appliance_auditor", "SELECT"): True,
            ("appliance_auditor", "INSERT"): False,
            ("appliance_auditor", "UPDATE"): False,
            ("appliance_auditor", "DELETE"): False,
        }
        migrate.downgrade(url, "0002_audit")
        inspect_after = inspect(engine)
        assert "classification_reviews" not in inspect_after.get_table_names()
        assert "classification_results" in inspect_after.get_table_names()
        migrate.upgrade(url)
        migrate.check_models_match(url)
    finally:
        engine.dispose()
