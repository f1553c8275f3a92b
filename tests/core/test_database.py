"""The engine survives a restarted database server: idle pooled connections are checked before
use, and a dead connection found in use recycles the pool."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest
from sqlalchemy import text

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


def _select_one(engine: object) -> int:
    with db.autocommit(engine) as connection:  # type: ignore[arg-type]
        return int(connection.execute(text("SELECT 1")).scalar_one())


def test_a_connection_idle_past_the_window_is_replaced_before_use(
    make_settings: Callable[..., Settings], pg_admin_url: str
) -> None:
    engine = db.make_engine(make_settings())
    try:
        assert _select_one(engine) == 1
        assert _terminate_appliance_connections(pg_admin_url) == 1
        time.sleep(db.PING_IDLE_AFTER_S + 0.2)
        assert _select_one(engine) == 1
    finally:
        engine.dispose()


def test_a_dead_connection_in_constant_use_fails_once_then_the_pool_recovers(
    make_settings: Callable[..., Settings], pg_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_IDLE_AFTER_S", 3600.0)
    engine = db.make_engine(make_settings())
    try:
        assert _select_one(engine) == 1
        assert _terminate_appliance_connections(pg_admin_url) == 1
        with pytest.raises(DatabaseUnavailable):
            _select_one(engine)
        assert _select_one(engine) == 1
    finally:
        engine.dispose()
