"""Bring up the real appliance stack for benchmarks and end-to-end tests: a migrated database,
a dev PKI with a client holding every role an API caller can have, and the appliance started
exactly as operators and the quick start start it: ``appliance serve`` (gunicorn with the
production configuration)."""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from appliance import migrate
from harness import audit_keys, job_keys, postgres
from harness.tls import ClientCert, DevPki, GunicornServer, run_gunicorn
from harness.upstream import VllmEndpoint
from harness.workers import WorkerProcess

CLIENT_URI = "spiffe://hospital/svc/bench"
ROLES = """\
version: 1
rules:
  - uri: "spiffe://hospital/svc/bench"
    roles: [classifier, reader, reviewer, auditor, metrics]
"""


@dataclass
class Stack:
    server: GunicornServer
    pki: DevPki
    client_cert: ClientCert
    database_url: str
    pseudonym_key: Path
    """The audit pseudonym key the appliance was given (as every install gives it one)."""
    env: dict[str, str]
    """The appliance's settings (``APPLIANCE_*``), for workers started next to it."""

    def worker(self, log: Path, **settings: str) -> WorkerProcess:
        """An ``appliance worker`` with the API's settings (plus ``settings``)."""
        return WorkerProcess({**self.env, **settings}, log)

    def client_options(self) -> dict[str, object]:
        """Keyword arguments for httpx clients: trust the dev CA, present the client cert."""
        return {"verify": self.pki.client_context(self.client_cert)}

    @property
    def libpq_url(self) -> str:
        """``database_url`` as psycopg takes it (the superuser's, for inspection)."""
        return self.database_url.replace("postgresql+psycopg://", "postgresql://", 1)

    @property
    def url(self) -> str:
        return self.server.url("")

    def wait_started(self, timeout_s: float = 300) -> None:
        """Until /health/startup is 200: migrations at head and every worker warmed up."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(**self.client_options()) as client:  # type: ignore[arg-type]
            while time.monotonic() < deadline:
                if client.get(self.server.url("/health/startup")).status_code == 200:
                    return
                time.sleep(0.5)
        raise TimeoutError(f"appliance not started after {timeout_s}s:\n{self.server.log()}")


@contextlib.contextmanager
def appliance_stack(
    database_url: str,
    vllm: VllmEndpoint,
    logins: postgres.Logins,
    extra_env: dict[str, str] | None = None,
    roles: str = ROLES,
) -> Iterator[Stack]:
    """``database_url``: a superuser ``postgresql://`` URL of an empty database owned by
    ``logins.owner``. Migrated as the owner; the appliance runs as ``logins.app``, as in
    production. ``Stack.database_url`` is the superuser URL, for inspection. ``roles``: the
    role table (default: the client holds every role but admin, without quotas)."""
    sqlalchemy_url = postgres.sqlalchemy_url(database_url)
    migrate.upgrade(logins.url(sqlalchemy_url, logins.owner))
    workdir = Path(tempfile.mkdtemp(prefix="appliance-stack-"))
    pki = DevPki.create(workdir / "pki")
    client_cert = pki.client("bench", f"URI:{CLIENT_URI}")
    roles_path = workdir / "roles.yaml"
    roles_path.write_text(roles)
    pseudonym_key = audit_keys.pseudonym_key(workdir)
    job_key = job_keys.job_key(workdir)
    env = {
        "APPLIANCE_DATABASE_URL": logins.url(sqlalchemy_url, logins.app),
        audit_keys.ENV: str(pseudonym_key),
        job_keys.ENV: str(job_key),
        **vllm.env,
        **(extra_env or {}),
    }
    serve = [str(Path(sys.executable).with_name("appliance")), "serve"]
    with run_gunicorn(
        "appliance.wsgi:app", pki=pki, roles_path=roles_path, env=env, command=serve
    ) as server:
        yield Stack(server, pki, client_cert, sqlalchemy_url, pseudonym_key, env)
