"""Database engine, the declarative base, and the ways to borrow a connection.

``transaction`` gives an ORM session (most code). The classification hot path runs its two
statements on an ``autocommit`` psycopg connection borrowed from the same pool: the ORM unit of
work, SQLAlchemy's execution layer and the BEGIN/COMMIT round trips cost more than the
statements themselves (see docs/benchmarks.md). "Database down" is one error
type (``DatabaseUnavailable``) whatever the driver said.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from sqlalchemy import MetaData, create_engine, event, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.pool import ConnectionPoolEntry

from appliance.errors import DatabaseUnavailable
from appliance.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


PING_IDLE_AFTER_S = 0.5
"""A pooled connection unused for longer than this is checked before it is handed out."""
_LAST_CHECKIN = "appliance.last_checkin"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(settings: Settings) -> Engine:
    """A pooled engine that survives a restarted server (see ``ping_idle_connections``).
    Statement parameters are kept out of error messages, and so out of logs."""
    engine = create_engine(
        settings.database_url,
        hide_parameters=True,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        pool_timeout=settings.database_pool_timeout_s,
        connect_args={"connect_timeout": 5, "application_name": "docclass-appliance"},
    )
    ping_idle_connections(engine, PING_IDLE_AFTER_S)
    return engine


def ping_idle_connections(engine: Engine, idle_s: float) -> None:
    """Check a pooled connection with a round trip before use when it sat idle over ``idle_s``,
    or when any connection was found dead since it was last used.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: an extra round trip per statement
    group, over a millisecond per classification at p50 here. Like HikariCP's
    ``aliveBypassWindowMs``, a connection in constant use skips the ping. If the server restarts
    under load, the requests that picked up a dead connection fail with 503, and every other
    pooled connection is checked before its next use; after a quiet spell (a failover, a
    maintenance restart) no request fails.
    """
    distrust_before = [0.0]  # checkins up to this moment predate a dead connection

    @event.listens_for(engine, "checkin")
    def remember_checkin(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_LAST_CHECKIN] = time.monotonic()

    @event.listens_for(engine, "invalidate")
    def distrust_pool(dbapi_connection: Any, record: ConnectionPoolEntry, exc: Any) -> None:
        distrust_before[0] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        last = record.info.get(_LAST_CHECKIN)  # None: connected just now
        if last is None or (time.monotonic() - last <= idle_s and last > distrust_before[0]):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the driver's error, whatever it is: reconnect
            raise DisconnectionError("pooled connection is dead") from exc


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """Turn a lost or refused database connection, or a pool with no connection to lend within
    ``database_pool_timeout_s``, into ``DatabaseUnavailable``. (``Engine.raw_connection`` lets
    the driver's own error through when a new connection is refused.)"""
    try:
        yield
    except PoolTimeout as exc:
        raise DatabaseUnavailable("the database is busy") from exc
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable("the database is unavailable") from exc
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
def autocommit(engine: Engine) -> Iterator[psycopg.Connection[Any]]:
    """A pooled psycopg connection in autocommit mode, for the classification hot path: each
    statement commits on its own (a read, or a write done in one statement), which saves the
    BEGIN and COMMIT round trips, and the statements skip SQLAlchemy's connection and execution
    layers, which cost more CPU than the statements themselves (see docs/benchmarks.md).

    Errors get SQLAlchemy's treatment: a broken connection is invalidated (and the rest of the
    pool checked, see ``ping_idle_connections``), and an ``OperationalError`` becomes
    ``DatabaseUnavailable``. The connection goes back to the pool in transactional mode."""
    with database_errors():
        pooled = engine.raw_connection()
    try:
        raw = _psycopg(pooled.driver_connection)
    except TypeError:
        pooled.close()
        raise
    try:
        raw.autocommit = True
        yield raw
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable("the database is unavailable") from exc
    finally:
        if raw.broken or raw.closed:  # whatever the caller made of the error
            pooled.invalidate()
        else:
            try:
                raw.autocommit = False
            except psycopg.Error as exc:
                pooled.invalidate(exc)
        pooled.close()


def _psycopg(dbapi_connection: Any) -> psycopg.Connection[Any]:
    if not isinstance(dbapi_connection, psycopg.Connection):
        raise TypeError("the appliance needs the psycopg driver (postgresql+psycopg://)")
    return dbapi_connection


def ping(engine: Engine) -> None:
    """Raise ``DatabaseUnavailable`` unless the database answers a trivial query."""
    with transaction(engine) as session:
        session.execute(text("SELECT 1"))


def insert_sql(model: type[Base]) -> bytes:
    """The INSERT of one row of ``model``'s table, every column a named placeholder, rendered to
    bytes once (psycopg would render a composed statement again on every execution)."""
    columns = [column.key for column in model.__table__.c]
    return (
        sql.SQL("INSERT INTO {table} ({columns}) VALUES ({values})")
        .format(
            table=sql.Identifier(model.__tablename__),
            columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
            values=sql.SQL(", ").join(map(sql.Placeholder, columns)),
        )
        .as_bytes()
    )


def row_values(row: Base) -> dict[str, Any]:
    """Parameters for ``insert_sql`` from a new (transient) ORM object."""
    values = {}
    for column in row.__table__.c:
        value = getattr(row, column.key)
        values[column.key] = Jsonb(value) if isinstance(column.type, JSONB) else value
    return values
