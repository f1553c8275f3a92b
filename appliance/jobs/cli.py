"""``appliance jobs``: submit a JSON Lines file as a bulk job, follow it, read its results, cancel
it; a client of a running appliance over mutual TLS (the job runs on the workers, not here).

Exit status (``appliance.cli``): 0 when the command did what was asked (``--follow``: the job
ended ``done``), 1 on an error the appliance reported or a job that ended otherwise."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx

from appliance.client import ServiceConfig, service_client
from appliance.errors import ApplianceError

R = TypeVar("R")
FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
ENDED = frozenset({"done", "failed", "cancelled"})
POLL_S = 1.0


class JobCommandFailed(ApplianceError):
    """The appliance refused a request, could not be reached, or the job did not end done."""

    code = "job_command_failed"


def _service_options(command: Callable[..., R]) -> Callable[..., R]:
    """``--service`` (required) and the client certificate, handed on as one ``config``."""

    @functools.wraps(command)
    def with_config(
        *args: Any, service: str, cert: Path | None, key: Path | None, ca: Path | None, **kw: Any
    ) -> R:
        return command(*args, config=ServiceConfig(service, cert, key, ca), **kw)

    options = [
        click.option("--service", envvar="APPLIANCE_CLI_SERVICE_URL", required=True,
                     help="Base URL of the appliance (https://host:8443)."),
        click.option("--cert", type=FILE, envvar="APPLIANCE_CLI_CERT",
                     help="Client certificate (PEM)."),
        click.option("--key", type=FILE, envvar="APPLIANCE_CLI_KEY", help="Client key (PEM)."),
        click.option("--ca", type=FILE, envvar="APPLIANCE_CLI_CA",
                     help="CA certificate(s) that signed the service's certificate."),
    ]  # fmt: skip
    decorated: Callable[..., R] = with_config
    for option in reversed(options):
        decorated = option(decorated)
    return decorated


def _answer(client: httpx.Client, method: str, path: str, **request: Any) -> dict[str, Any]:
    """The JSON body of a 2xx answer; else the appliance's error as ``JobCommandFailed``."""
    try:
        response = client.request(method, path, **request)
    except httpx.HTTPError as exc:
        raise JobCommandFailed(f"cannot reach the appliance: {exc}") from exc
    try:
        body = response.json()
    except ValueError as exc:
        raise JobCommandFailed(f"HTTP {response.status_code}: not a JSON answer") from exc
    if not response.is_success or not isinstance(body, dict):
        error = body.get("error", {}) if isinstance(body, dict) else {}
        raise JobCommandFailed(
            f"HTTP {response.status_code} {error.get('code', '')}: {error.get('message', '')}"
        )
    return body


def _echo(body: dict[str, Any]) -> None:
    click.echo(json.dumps(body, indent=2))


@click.group()
def jobs() -> None:
    """Bulk jobs on a running appliance: submit, status, results, cancel."""


@jobs.command()
@click.argument("file", type=FILE)
@click.option("--idempotency-key", help="Resubmitting with the same key answers the same job.")
@click.option("--follow", is_flag=True, help="Show progress until the job ends.")
@_service_options
def submit(file: Path, idempotency_key: str | None, follow: bool, config: ServiceConfig) -> None:
    """Submit FILE (JSON Lines: one {"document_id", "text"} per line) as a job."""
    headers = {"Content-Type": "application/x-ndjson"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    with service_client(config) as client:
        job = _answer(client, "POST", "/api/v1/jobs", content=file.read_bytes(), headers=headers)
        if not follow:
            _echo(job)
            return
        job = _follow(client, job)
    _echo(job)
    if job["state"] != "done":
        raise JobCommandFailed(f"job {job['job_id']} ended {job['state']}")


def _follow(client: httpx.Client, job: dict[str, Any]) -> dict[str, Any]:
    """Poll the job until it ends, with a progress bar on stderr; its final state."""
    from tqdm import tqdm  # type: ignore[import-untyped]  # only when following

    counts = job["counts"]
    with tqdm(total=counts["total"], unit="item", desc=job["job_id"][:8]) as bar:
        while True:
            counts = job["counts"]
            bar.n = counts["done"] + counts["failed"] + counts["cancelled"]
            bar.set_postfix(failed=counts["failed"], refresh=False)
            bar.refresh()
            if job["state"] in ENDED:
                return job
            time.sleep(POLL_S)
            job = _answer(client, "GET", f"/api/v1/jobs/{job['job_id']}")


@jobs.command()
@click.argument("job_id")
@_service_options
def status(job_id: str, config: ServiceConfig) -> None:
    """Print JOB_ID's state, counts, throughput and time left."""
    with service_client(config) as client:
        _echo(_answer(client, "GET", f"/api/v1/jobs/{job_id}"))


@jobs.command()
@click.argument("job_id")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the results here instead of standard output.")  # fmt: skip
@_service_options
def results(job_id: str, output: Path | None, config: ServiceConfig) -> None:
    """Write every item of JOB_ID with its result or error, one JSON object per line."""
    with service_client(config) as client:
        lines = (json.dumps(item) for item in _all_items(client, job_id))
        if output is None:
            for line in lines:
                click.echo(line)
        else:
            with output.open("w", encoding="utf-8") as out:
                out.writelines(line + "\n" for line in lines)


def _all_items(client: httpx.Client, job_id: str) -> Iterator[dict[str, Any]]:
    after: int | None = 0
    while after is not None:
        page = _answer(client, "GET", f"/api/v1/jobs/{job_id}/results",
                       params={"after": after, "limit": 1000})  # fmt: skip
        yield from page["items"]
        after = page["next_after"]


@jobs.command()
@click.argument("job_id")
@_service_options
def cancel(job_id: str, config: ServiceConfig) -> None:
    """Cancel JOB_ID's unfinished items."""
    with service_client(config) as client:
        _echo(_answer(client, "POST", f"/api/v1/jobs/{job_id}/cancel"))
