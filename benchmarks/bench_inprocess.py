"""CPU per classification inside one process: the app with a Flask test client, a real
PostgreSQL and the instant upstream, without TLS, gunicorn or a load generator.

It isolates the appliance's own code from the machine's web stack, so it is the figure to
compare between two commits (run it in a checkout of each). It prints, and writes nothing.

Run: ``.venv/bin/python -m benchmarks.bench_inprocess [--requests N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from appliance import migrate
from appliance.app import create_app
from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY, ROLES
from appliance.services import build_services
from appliance.settings import Settings
from benchmarks.bench_classify import document, instant_upstream
from harness import audit_keys, postgres
from harness.identity import identity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000, help="per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with postgres.admin_server() as admin:
        databases = postgres.DatabaseFactory(admin)
        try:
            url = postgres.sqlalchemy_url(databases.create())
            migrate.upgrade(url)
            with instant_upstream() as upstream:
                key = audit_keys.pseudonym_key(Path(tempfile.mkdtemp()))
                settings = Settings(
                    database_url=url, vllm_base_url=upstream, audit_pseudonym_key_path=key
                )
                app = create_app(build_services(settings))
                client = app.test_client()
                # What the mTLS middleware would publish (environ_base is typed str-only).
                client.environ_base[IDENTITY_ENVIRON_KEY] = identity(*ROLES)  # type: ignore[assignment]
                cpu_ms: list[float] = []
                for round_number in range(-1, args.rounds):  # round -1 warms up
                    started = time.process_time()
                    for n in range(args.requests):
                        body = document(n, f"r{round_number}")
                        response = client.post("/api/v1/classify-document", json=body)
                        assert response.status_code == 200, response.get_json()
                    if round_number >= 0:
                        cpu_ms.append((time.process_time() - started) * 1000 / args.requests)
        finally:
            databases.close()
    print(
        f"CPU per classification over {args.rounds} rounds of {args.requests}: "
        f"best {min(cpu_ms):.2f} ms, median {statistics.median(cpu_ms):.2f} ms"
    )


if __name__ == "__main__":
    main()
