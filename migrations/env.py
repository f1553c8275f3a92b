"""Alembic environment: online migrations only, under timeouts and a cluster-wide advisory lock.

The advisory lock makes concurrent ``appliance db upgrade`` runs (several hosts starting at once)
take turns instead of racing.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text
from sqlalchemy.schema import SchemaItem

from appliance.classification import models  # noqa: F401  (registers the tables)
from appliance.db import Base
from appliance.jobs import models as job_models  # noqa: F401
from appliance.review import models as review_models  # noqa: F401

MIGRATION_LOCK_ID = 0x61707031  # "app1"


DERIVED_FOR_AUDITORS = {("column", "decision"), ("index", "ix_classification_results_decision")}
"""What migration 0015 adds to ``classification_results`` for ``audit-tool verify`` alone (a
generated digest and its index): the application neither reads nor writes it."""
DERIVED_TABLE = "classification_results"


def include_object(
    obj: SchemaItem, name: str | None, type_: str, reflected: bool, compare_to: SchemaItem | None
) -> bool:
    """Compare only what the ORM declares: tables made by raw SQL (the audit log) are not models,
    nor are the results' columns derived for the auditors."""
    table = getattr(getattr(obj, "table", None), "name", None)
    derived = table == DERIVED_TABLE and (type_, name) in DERIVED_FOR_AUDITORS
    if reflected and compare_to is None and derived:
        return False
    return not (type_ == "table" and reflected and compare_to is None)


def run_migrations_online() -> None:
    config = context.config
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        connection.execute(text("SET statement_timeout = '60s'"))
        connection.execute(text("SET lock_timeout = '10s'"))
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                include_object=include_object,
                compare_type=True,
                transaction_per_migration=True,
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported: run against the database")
run_migrations_online()
