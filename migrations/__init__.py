"""Alembic migrations: the only way the schema changes. Run with ``appliance db upgrade``."""
