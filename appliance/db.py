"""Database engine, the declarative base, and the three ways to borrow a connection.

``transaction`` gives an ORM session (most code); ``writing`` and ``reading`` give Core connections
for the classification hot path, where the ORM unit of work cost more CPU than the rest of the
request's database work (see docs/benchmarks.md). "Database down" is one error type
(``DatabaseUnavailable``) whatever the driver said.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session

from appliance.errors import DatabaseUnavailable
from appliance.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(settings: Settings) -> Engine:
    """A pooled engine; connections are checked before use so a restarted server is survived.
    Statement parameters are kept out of error messages, and so out of logs."""
    return create_engine(
        settings.database_url,
        hide_parameters=True,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        pool_timeout=settings.database_pool_timeout_s,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5, "application_name": "docclass-appliance"},
    )


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """Turn a lost or refused database connection into ``DatabaseUnavailable``."""
    try:
        yield
    except (OperationalError, DBAPIError) as exc:
        if isinstance(exc, OperationalError) or exc.connection_invalidated:
            raise DatabaseUnavailable("the database is unavailable") from exc
        raise


@contextlib.contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any error."""
    with database_errors(), Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


@contextlib.contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A Core connection in a transaction that commits on success and rolls back on any error."""
    with database_errors(), engine.begin() as connection:
        yield connection


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A Core connection in autocommit mode, for single reads that need no transaction (it saves
    the BEGIN and COMMIT round trips)."""
    with database_errors(), engine.connect() as connection:
        yield connection.execution_options(isolation_level="AUTOCOMMIT")


def ping(engine: Engine) -> None:
    """Raise ``DatabaseUnavailable`` unless the database answers a trivial query."""
    with transaction(engine) as session:
        session.execute(text("SELECT 1"))
