"""The test session's PostgreSQL: the one named in the environment, or a throwaway cluster.

``APPLIANCE_TEST_DATABASE_URL`` (a superuser URL) wins. Otherwise a cluster is created in a
temporary folder with the system's PostgreSQL binaries, listening on a free loopback port, and
removed at the end. initdb refuses to run as root, so as root the cluster runs as an
unprivileged OS user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

ENV_URL = "APPLIANCE_TEST_DATABASE_URL"
UNPRIVILEGED_USER = "nobody"


def _postgres_bindir() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian layout first, then PATH)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError(
        f"no PostgreSQL server binaries found: install Debian's postgresql package or set {ENV_URL}"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_user_prefix() -> list[str]:
    return ["runuser", "-u", UNPRIVILEGED_USER, "--"] if os.geteuid() == 0 else []


@dataclass(frozen=True)
class Cluster:
    """A private cluster: its superuser URL, and a way to restart it (as an operator would)."""

    url: str
    datadir: Path
    bindir: Path
    log: Path

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: open connections are cut, the server is back at once.
        (The server's output goes to ``log``: a pipe would keep this call waiting on it.)"""
        subprocess.run(
            [*_as_user_prefix(), str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l",
             str(self.log), "-m", "fast", "-w", "restart"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip


@contextlib.contextmanager
def private_cluster() -> Iterator[Cluster]:
    """Start a private cluster; yield it; stop and delete it afterwards."""
    bindir = _postgres_bindir()
    workdir = Path(tempfile.mkdtemp(prefix="appliance-pg-"))
    datadir, sockdir = workdir / "data", workdir / "sock"
    sockdir.mkdir()
    if os.geteuid() == 0:
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
        for path in (workdir, sockdir):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    prefix = _as_user_prefix()
    port = _free_port()
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust",
         "-E", "UTF8", "--no-sync"],
        check=True, capture_output=True,
    )  # fmt: skip
    # Settings live in the data directory so that a restart keeps them.
    with (datadir / "postgresql.conf").open("a") as conf:
        conf.write(
            f"port = {port}\nunix_socket_directories = '{sockdir}'\n"
            "listen_addresses = '127.0.0.1'\nfsync = off\nsynchronous_commit = off\n"
            "full_page_writes = off\nmax_connections = 300\n"
        )
    subprocess.run(
        [*prefix, str(bindir / "pg_ctl"), "-D", str(datadir), "-l", str(workdir / "server.log"),
         "-w", "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        yield Cluster(url, datadir, bindir, workdir / "server.log")
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "fast", "stop"],
            check=False, capture_output=True,
        )  # fmt: skip
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[str]:
    """Start a private cluster; yield its superuser URL; stop and delete it afterwards."""
    with private_cluster() as cluster:
        yield cluster.url


@contextlib.contextmanager
def admin_server() -> Iterator[str]:
    """Yield a superuser URL (``postgresql://...``) for the session's server."""
    url = os.environ.get(ENV_URL)
    if url:
        yield url
    else:
        with throwaway_cluster() as started:
            yield started


def with_database(url: str, dbname: str) -> str:
    """The same server URL, pointing at another database."""
    base, _, _ = url.rpartition("/")
    return f"{base}/{dbname}"


def sqlalchemy_url(url: str) -> str:
    """``postgresql://`` -> ``postgresql+psycopg://`` so SQLAlchemy picks psycopg 3."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


class DatabaseFactory:
    """Creates uniquely named databases on the admin server and drops them all on close."""

    def __init__(self, admin_url: str, owner: str | None = None) -> None:
        """``owner``: the login that owns each new database (as the schema owner does in
        production); default the admin."""
        self.admin_url = admin_url
        self.owner = owner
        self.created: list[str] = []

    def create(self, prefix: str = "appliance_test") -> str:
        """A new empty database; its superuser URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            if self.owner is not None:
                conn.execute(
                    sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                        sql.Identifier(name), sql.Identifier(self.owner)
                    )
                )
        self.created.append(name)
        return with_database(self.admin_url, name)

    def close(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self.created:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        self.created.clear()


SERVICE_GROUPS = ("appliance_app", "appliance_sealer", "appliance_auditor")
"""The NOLOGIN group roles the migrations grant to (see migrations/versions/0002_audit.py)."""


@dataclass(frozen=True)
class Logins:
    """Login roles as production has them: the schema owner (runs migrations; CREATEROLE, not a
    superuser) and one login per service in its group role. Made per test session."""

    owner: str
    app: str
    sealer: str
    auditor: str
    password: str

    def url(self, admin_url: str, login: str) -> str:
        """``admin_url`` (any database) as ``login``."""
        scheme, _, rest = admin_url.partition("://")
        _, _, host_and_db = rest.rpartition("@")
        return f"{scheme}://{login}:{self.password}@{host_and_db}"


def create_logins(admin_url: str) -> Logins:
    tag = uuid.uuid4().hex[:8]
    logins = Logins(
        f"docclass_test_owner_{tag}",
        f"docclass_test_app_{tag}",
        f"docclass_test_sealer_{tag}",
        f"docclass_test_auditor_{tag}",
        uuid.uuid4().hex,
    )
    statements = [
        *(
            sql.SQL(
                "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {name})"
                " THEN CREATE ROLE {role} NOLOGIN; END IF; END $$"
            ).format(name=sql.Literal(group), role=sql.Identifier(group))
            for group in SERVICE_GROUPS
        ),
        sql.SQL("CREATE ROLE {} LOGIN CREATEROLE NOSUPERUSER PASSWORD {}").format(
            sql.Identifier(logins.owner), sql.Literal(logins.password)
        ),
        *(
            sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER PASSWORD {} IN ROLE {}").format(
                sql.Identifier(login), sql.Literal(logins.password), sql.Identifier(group)
            )
            for login, group in zip(
                (logins.app, logins.sealer, logins.auditor), SERVICE_GROUPS, strict=True
            )
        ),
    ]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)
    return logins


def drop_logins(admin_url: str, logins: Logins) -> None:
    """Drop the logins (their databases must be gone)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for login in (logins.app, logins.sealer, logins.auditor, logins.owner):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))


@contextlib.contextmanager
def databases_with_logins() -> Iterator[tuple[DatabaseFactory, Logins]]:
    """For benchmarks: the server of ``admin_server``, the least-privilege logins on it and a
    factory of databases owned by the owner login; all removed afterwards."""
    with admin_server() as admin:
        logins = create_logins(admin)
        databases = DatabaseFactory(admin, owner=logins.owner)
        try:
            yield databases, logins
        finally:
            databases.close()
            drop_logins(admin, logins)
