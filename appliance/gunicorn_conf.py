"""gunicorn configuration for the appliance (reviewed like code; values come from Settings).

Run with ``appliance serve``, which is ``gunicorn -c <this file> appliance.wsgi:app``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

# Prometheus multiprocess mode is chosen when prometheus_client is first imported, and the
# imports below import it: the folder must be set before them. One folder per instance, so two
# instances on one host do not wipe each other's metrics (an operator may set it, as the
# Ansible unit does).
_METRICS_PREFIX = os.path.join(tempfile.gettempdir(), "docclass-appliance-metrics-")
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:  # this file is read again on every HUP
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=_METRICS_PREFIX)

from prometheus_client import multiprocess  # noqa: E402

from appliance.identity.tls import tls_settings_from  # noqa: E402
from appliance.settings import Settings  # noqa: E402
from appliance.web import services_of  # noqa: E402

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


def on_starting(server: Any) -> None:
    """A fresh metrics folder: counts left by an earlier run would be added to this one's."""
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, mode=0o700)


def on_exit(server: Any) -> None:
    """Remove the metrics folder if this file made it (not one the operator named)."""
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    if folder.startswith(_METRICS_PREFIX):
        shutil.rmtree(folder, ignore_errors=True)


def post_worker_init(worker: Any) -> None:
    """Each worker warms the model up in the background; /health/startup waits for it."""
    services_of(worker.wsgi).startup.start_warm_up()


def child_exit(server: Any, worker: Any) -> None:
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
