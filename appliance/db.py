"""Database engine, the declarative base, and one session per unit of work.

"Database down" is one error type (``DatabaseUnavailable``) whatever the driver said.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.engine import Engine
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
def transaction(engine: Engine) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any error."""
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session
    except (OperationalError, DBAPIError) as exc:
        if isinstance(exc, OperationalError) or exc.connection_invalidated:
            raise DatabaseUnavailable("the database is unavailable") from exc
        raise


def ping(engine: Engine) -> None:
    """Raise ``DatabaseUnavailable`` unless the database answers a trivial query."""
    with transaction(engine) as session:
        session.execute(text("SELECT 1"))
