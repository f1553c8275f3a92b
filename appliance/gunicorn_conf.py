"""gunicorn configuration for the appliance (reviewed like code; values come from Settings).

Run with ``appliance serve``, which is ``gunicorn -c <this file> appliance.wsgi:app``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from prometheus_client import multiprocess

from appliance.identity.tls import tls_settings_from
from appliance.settings import Settings
from appliance.web import services_of

_settings = Settings()

# Mutual TLS is not optional: certfile, keyfile, ca_certs, cert_reqs=CERT_REQUIRED and the
# ssl_context hook (TLS >= 1.2, CRL checked, files re-read when replaced on disk).
globals().update(tls_settings_from(_settings))

bind = [_settings.bind]
workers = _settings.workers
worker_class = "gthread"
threads = _settings.threads
graceful_timeout = _settings.graceful_timeout_s
timeout = int(_settings.vllm_read_timeout_s * (_settings.vllm_max_retries + 1)) + 30
keepalive = 15
accesslog = None  # the app logs structured lines itself
control_socket_disable = True  # the appliance exposes no local control channel
forwarded_allow_ips = ""  # never trust X-Forwarded-* from callers
proc_name = "docclass-appliance"

# Prometheus multiprocess mode: one shared folder, set before workers fork, wiped at start.
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), "docclass-appliance-metrics")
)


def on_starting(server: Any) -> None:
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, mode=0o700)


def post_worker_init(worker: Any) -> None:
    """Each worker warms the model up in the background; /health/startup waits for it."""
    services_of(worker.wsgi).startup.start_warm_up()


def child_exit(server: Any, worker: Any) -> None:
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
