"""The engine survives a restarted database server: idle pooled connections are checked before
use, and a dead connection found in use gets the rest of the pool checked."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from appliance import db
from appliance.errors import DatabaseUnavailable
from appliance.settings import Settings


def _terminate_appliance_connections(admin_url: str) -> int:
    """What a server restart does to the pool: every appliance connection is cut."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'docclass-appliance'"
        ).fetchone()
    assert killed is not None
    return int(killed[0])


def _through_the_orm(engine: Engine) -> int:
    with db.transaction(engine) as session:
        return int(session.execute(text("SELECT 1")).scalar_one())


def _through_the_driver(engine: Engine) -> int:
    """As the classification hot path runs its statements."""
    with db.autocommit(engine) as connection:
        row = connection.execute("SELECT 1").fetchone()
    assert row is not None
    return int(row[0])


WAYS = pytest.mark.parametrize("select_one", [_through_the_orm, _through_the_driver])


@WAYS
def test_a_connection_idle_past_the_window_is_replaced_before_use(
    make_settings: Callable[..., Settings],
    pg_admin_url: str,
    select_one: Callable[[Engine], int],
) -> None:
    engine = db.make_engine(make_settings())
    try:
        assert select_one(engine) == 1
        assert _terminate_appliance_connections(pg_admin_url) == 1
        time.sleep(db.PING_IDLE_AFTER_S + 0.2)
        assert select_one(engine) == 1
    finally:
        engine.dispose()


@WAYS
def test_a_dead_connection_in_constant_use_fails_once_and_the_pool_recovers(
    make_settings: Callable[..., Settings],
    pg_admin_url: str,
    monkeypatch: pytest.MonkeyPatch,
    select_one: Callable[[Engine], int],
) -> None:
    """Two pooled connections die; the request that finds the first one dead fails, the next
    one gets the second connection checked (and replaced) although it was used just now."""
    monkeypatch.setattr(db, "PING_IDLE_AFTER_S", 3600.0)
    engine = db.make_engine(make_settings())
    try:
        with db.autocommit(engine), db.autocommit(engine):
            pass  # two connections in the pool
        assert _terminate_appliance_connections(pg_admin_url) == 2
        with pytest.raises(DatabaseUnavailable):
            select_one(engine)
        assert select_one(engine) == 1
        assert select_one(engine) == 1
    finally:
        engine.dispose()


def test_connections_go_back_to_the_pool_transactional(
    make_settings: Callable[..., Settings],
) -> None:
    """The hot path borrows a connection in autocommit mode; the ORM after it must not be."""
    engine = db.make_engine(make_settings(database_pool_size=1))
    try:
        with db.autocommit(engine) as connection:
            borrowed = connection
            assert connection.autocommit
        with db.transaction(engine) as session:
            connection = session.connection().connection.driver_connection
            assert connection is borrowed  # the pool's only idle connection
            assert not connection.autocommit
    finally:
        engine.dispose()


@WAYS
def test_a_refused_connection_is_database_unavailable(
    make_settings: Callable[..., Settings], select_one: Callable[[Engine], int]
) -> None:
    """A server that refuses new connections (down, starting up, shutting down)."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    engine = db.make_engine(
        make_settings(database_url=f"postgresql+psycopg://nobody@127.0.0.1:{port}/none")
    )
    try:
        with pytest.raises(DatabaseUnavailable):
            select_one(engine)
    finally:
        engine.dispose()


@WAYS
def test_a_pool_with_nothing_to_lend_is_database_unavailable(
    make_settings: Callable[..., Settings], select_one: Callable[[Engine], int]
) -> None:
    engine = db.make_engine(make_settings(database_pool_size=1, database_pool_timeout_s=0.1))
    try:
        # Both connections lent (the pool's and its overflow's), a third request waits in vain.
        with (
            db.autocommit(engine),
            db.autocommit(engine),
            pytest.raises(DatabaseUnavailable, match="busy"),
        ):
            select_one(engine)
    finally:
        engine.dispose()
