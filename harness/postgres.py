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


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[str]:
    """Start a private cluster; yield its superuser URL; stop and delete it afterwards."""
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
        [
            *prefix,
            str(bindir / "initdb"),
            "-D",
            str(datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    options = (
        f"-p {port} -k {sockdir} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
    )
    subprocess.run(
        [
            *prefix,
            str(bindir / "pg_ctl"),
            "-D",
            str(datadir),
            "-o",
            options,
            "-l",
            str(workdir / "server.log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "fast", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(workdir, ignore_errors=True)


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

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    def create(self, prefix: str = "appliance_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        return with_database(self.admin_url, name)

    def close(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self.created:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        self.created.clear()
