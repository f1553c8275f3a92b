"""Real mutual TLS for tests: a dev PKI in a folder and a real gunicorn serving TLS on a free port.

    pki = DevPki.create(tmp_path / "pki")
    client = pki.client("intake", "URI:spiffe://hospital/svc/intake")
    with run_gunicorn("appliance.wsgi:app", pki=pki, roles_path=roles) as server:
        requests.get(server.url("/health/live"), cert=client.pair, verify=pki.ca_path)

``run_gunicorn`` passes the TLS files as ``APPLIANCE_TLS_*`` (and the port as ``APPLIANCE_BIND``)
in the environment; by default it writes a small gunicorn config that applies
``appliance.identity.tls.gunicorn_tls_settings``. Pass ``config=`` to use another one (such as
``appliance/gunicorn_conf.py``) that reads the same variables.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from appliance.pki import DevCA, Issued

REPO = Path(__file__).resolve().parents[1]

_DEFAULT_CONFIG = """\
import os
from pathlib import Path

from appliance.identity.tls import gunicorn_tls_settings

bind = [os.environ["APPLIANCE_BIND"]]
workers = int(os.environ.get("APPLIANCE_WORKERS", "1"))
worker_class = os.environ.get("TEST_WORKER_CLASS", "gthread")
threads = 2
keepalive = 5
control_socket_disable = True
_crl = os.environ.get("APPLIANCE_TLS_CRL")
globals().update(gunicorn_tls_settings(
    cert=Path(os.environ["APPLIANCE_TLS_CERT"]),
    key=Path(os.environ["APPLIANCE_TLS_KEY"]),
    ca=Path(os.environ["APPLIANCE_TLS_CA"]),
    crl=Path(_crl) if _crl else None,
))
"""


@dataclass
class ClientCert:
    """An issued client certificate; ``pair`` is what requests' ``cert=`` wants."""

    issued: Issued

    @property
    def pair(self) -> tuple[str, str]:
        return (str(self.issued.cert_path), str(self.issued.key_path))


@dataclass
class DevPki:
    """A dev CA with a server certificate (localhost, 127.0.0.1) and a CRL, in ``directory``."""

    directory: Path
    ca: DevCA
    server: Issued
    clients: dict[str, ClientCert] = field(default_factory=dict)

    @classmethod
    def create(cls, directory: Path, common_name: str = "Test Dev CA") -> DevPki:
        ca = DevCA.init(directory, common_name=common_name)
        return cls(directory, ca, ca.issue_server())

    @property
    def ca_path(self) -> str:
        return str(self.ca.cert_path)

    @property
    def crl_path(self) -> Path:
        return self.ca.crl_path

    def client(self, name: str, *sans: str, expired: bool = False) -> ClientCert:
        cert = ClientCert(self.ca.issue_client(name, sans, expired=expired))
        self.clients[name] = cert
        return cert

    def client_context(
        self, cert: ClientCert | None, *, maximum: ssl.TLSVersion | None = None
    ) -> ssl.SSLContext:
        """A client SSLContext trusting this CA, optionally presenting ``cert``."""
        context = ssl.create_default_context(cafile=self.ca_path)
        if cert is not None:
            context.load_cert_chain(*cert.pair)
        if maximum is not None:
            context.maximum_version = maximum
        return context

    def env(self) -> dict[str, str]:
        return {
            "APPLIANCE_TLS_CERT": str(self.server.cert_path),
            "APPLIANCE_TLS_KEY": str(self.server.key_path),
            "APPLIANCE_TLS_CA": self.ca_path,
            "APPLIANCE_TLS_CRL": str(self.crl_path),
        }


@dataclass
class GunicornServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def url(self, path: str = "/", host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def hup(self, timeout: float = 20.0) -> None:
        """Graceful reload: wait until a new worker has booted."""
        before = self.log().count("Booting worker")
        self.process.send_signal(signal.SIGHUP)
        _wait_for(lambda: self.log().count("Booting worker") > before, timeout, self)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def run_gunicorn(
    app: str,
    *,
    pki: DevPki,
    roles_path: Path | None = None,
    config: Path | None = None,
    env: dict[str, str] | None = None,
    worker_class: str = "gthread",
    timeout: float = 30.0,
    command: list[str] | None = None,
) -> Iterator[GunicornServer]:
    """Start ``gunicorn app`` with mutual TLS (or ``command``, e.g. ``appliance serve``, which
    runs it with the production configuration); yield once a worker has booted; stop it."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="gunicorn-tls-"))
    if config is None:
        config = workdir / "gunicorn_conf.py"
        config.write_text(_DEFAULT_CONFIG)
    full_env = {
        **os.environ,
        **pki.env(),
        "APPLIANCE_BIND": f"127.0.0.1:{port}",
        "TEST_WORKER_CLASS": worker_class,
        "PYTHONPATH": str(REPO),
        **({"APPLIANCE_ROLES_PATH": str(roles_path)} if roles_path else {}),
        **(env or {}),
    }
    log_path = workdir / "gunicorn.log"
    with log_path.open("wb") as log:
        default = [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            str(config),
            "--chdir",
            str(REPO),
            app,
        ]
        process = subprocess.Popen(
            command or default,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = GunicornServer(process, port, log_path)
    try:
        _wait_for(
            lambda: "Booting worker" in server.log() and _worker_answers(port), timeout, server
        )
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _worker_answers(port: int) -> bool:
    """True once a worker completes TLS handshakes (it has loaded the app and accepts).

    A TLS 1.2 client without a certificate gets the server's alert only from a live worker;
    while no worker accepts, the connection just waits in the listen backlog.
    """
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
            context.wrap_socket(raw),
        ):
            return True
    except ssl.SSLError:
        return True  # refused by a live worker: it is serving
    except OSError:
        return False


def _wait_for(ready: Callable[[], bool], timeout: float, server: GunicornServer) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if server.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.process.returncode}:\n{server.log()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"gunicorn not ready after {timeout}s:\n{server.log()}")
        time.sleep(0.1)
