"""The real vLLM OpenAI server on the CPU with the tiny model, started once per test session.

Served as production's Ansible install serves it: TLS with a server certificate from a dev CA,
client certificates required (``--ssl-cert-reqs 2``) and an API key, so every end-to-end test
goes through the appliance's TLS and key settings (``VllmEndpoint.env``).

``APPLIANCE_TEST_VLLM_URL`` names an already running server instead (no TLS settings). Otherwise
``scripts/vllm-cpu.sh`` prepares the cached venv and model (quick when cached) and serves them on
a free loopback port; the whole process group is stopped at the end of the session.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from harness.tls import REPO, DevPki, free_port
from harness.upstream import VllmEndpoint

ENV_URL = "APPLIANCE_TEST_VLLM_URL"
SCRIPT = REPO / "scripts" / "vllm-cpu.sh"
MODEL_NAME = "smollm2-135m"
START_TIMEOUT_S = 600


def _healthy(endpoint: VllmEndpoint) -> bool:
    try:
        return httpx.get(
            f"{endpoint.url}/health", timeout=2, verify=endpoint.ssl_context()
        ).is_success
    except httpx.HTTPError:
        return False


def _served_securely(workdir: Path, port: int) -> tuple[VllmEndpoint, list[str], dict[str, str]]:
    """A dev CA, vLLM's server certificate, the appliance's client certificate, an API key."""
    pki = DevPki.create(workdir / "pki", common_name="Test vLLM CA")
    client = pki.client("appliance-to-vllm", "URI:spiffe://hospital/svc/appliance")
    api_key = secrets.token_urlsafe(32)
    key_file = workdir / "vllm-api-key"
    key_file.write_text(api_key + "\n")
    key_file.chmod(0o600)
    endpoint = VllmEndpoint(f"https://127.0.0.1:{port}", pki, client, key_file)
    args = [
        "--ssl-certfile", str(pki.server.cert_path), "--ssl-keyfile", str(pki.server.key_path),
        "--ssl-ca-certs", pki.ca_path, "--ssl-cert-reqs", str(int(ssl.CERT_REQUIRED)),
        "--enable-ssl-refresh",  # as the vllm role starts it (certificates re-read on change)
    ]
    return endpoint, args, {"VLLM_API_KEY": api_key}  # the key in the environment, not argv


@contextlib.contextmanager
def running_vllm() -> Iterator[VllmEndpoint]:
    """Yield a healthy vLLM server."""
    given = os.environ.get(ENV_URL)
    if given:
        yield VllmEndpoint(given)
        return
    subprocess.run([str(SCRIPT), "setup"], check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="vllm-cpu-"))
    endpoint, tls_args, tls_env = _served_securely(workdir, port)
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(SCRIPT), "serve", *tls_args],
            env={**os.environ, **tls_env, "PORT": str(port), "VLLM_MODEL_NAME": MODEL_NAME},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(endpoint):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"vLLM did not become healthy at {endpoint.url}:\n{tail}")
            time.sleep(1)
        yield endpoint
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
