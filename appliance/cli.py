"""The ``appliance`` command: serve, worker, database migrations, configuration check, and the
``pki``, ``eval``, ``classify``, ``taxonomy``, ``jobs`` and ``train`` commands.

Errors become exit codes in one place, ``ApplianceGroup``: 0 success, 1 an error the appliance
reports (its message on stderr), 2 a usage error (click's).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from appliance import migrate
from appliance.audit_bridge.services import load_pseudonym_key
from appliance.cascade.cli import train_command
from appliance.cascade.config import describe_cascade
from appliance.classification.taxonomy import load_taxonomy
from appliance.errors import ApplianceError
from appliance.evaluation.cli import classify_command, eval_command, taxonomy
from appliance.identity.roles import RoleConfigError, load_role_map
from appliance.identity.tls import TlsConfigError, tls_settings_from
from appliance.jobs.cli import jobs
from appliance.pki.cli import pki
from appliance.pki.errors import PkiError
from appliance.settings import Settings
from audit.errors import KeyFileError

GUNICORN_CONF = Path(__file__).with_name("gunicorn_conf.py")
REPORTED_ERRORS = (ApplianceError, KeyFileError, PkiError, RoleConfigError, TlsConfigError)
"""Errors whose message is the whole story for an operator: no traceback, exit status 1."""


class ApplianceGroup(click.Group):
    """The one place the appliance's errors become a message and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except REPORTED_ERRORS as exc:
            message = exc.message if isinstance(exc, ApplianceError) else str(exc)
            raise click.ClickException(message) from exc


@click.group(cls=ApplianceGroup)
def cli() -> None:
    """On-premise document classification appliance."""


@cli.command()
def serve() -> None:
    """Run the API under gunicorn (configuration from APPLIANCE_* variables)."""
    os.execvp(  # noqa: S606 - replacing this process with gunicorn is the point
        sys.executable,
        [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "appliance.wsgi:app"],
    )


@cli.command()
def worker() -> None:
    """Classify bulk jobs' items from the queue until stopped (SIGTERM: finish the chunks in
    hand). Run any number, on any node; each keeps APPLIANCE_WORKER_CONCURRENCY in flight."""
    from appliance.jobs.worker import run_worker  # the worker's imports, only when it runs
    from appliance.services import build_services

    services = build_services(Settings(), traffic="bulk")
    try:
        run_worker(services)
    finally:
        services.close()


@cli.group()
def db() -> None:
    """Database schema migrations (Alembic)."""


@db.command()
@click.option("--revision", default="head", show_default=True)
def upgrade(revision: str) -> None:
    """Upgrade the schema."""
    migrate.upgrade(Settings().database_url, revision)


@db.command()
@click.argument("revision")
def downgrade(revision: str) -> None:
    """Downgrade the schema to REVISION (``base`` removes everything)."""
    migrate.downgrade(Settings().database_url, revision)


@db.command()
def check() -> None:
    """Fail if the models and the migrations disagree."""
    migrate.check_models_match(Settings().database_url)


@cli.command("check-config")
def check_config() -> None:
    """Validate the settings and the taxonomy; print what will be used (no secrets)."""
    settings = Settings()
    taxonomy = load_taxonomy(settings.taxonomy_path)
    load_role_map(settings.roles_path)
    tls_settings_from(settings)
    pseudonymised = load_pseudonym_key(settings) is not None
    cascade = describe_cascade(settings.cascade_path, taxonomy)
    shown = settings.model_dump(mode="json", exclude={"database_url", "vllm_api_key"})
    click.echo(
        json.dumps(
            {
                "settings": shown,
                "taxonomy_version": taxonomy.version,
                "labels": list(taxonomy.names),
                "cascade": cascade,
                "audit_identifiers": "pseudonymised"
                if pseudonymised
                else "RAW: document ids and content hashes are logged in clear (opted out)",
            },
            indent=2,
        )
    )


cli.add_command(pki)
cli.add_command(eval_command)
cli.add_command(classify_command)
cli.add_command(taxonomy)
cli.add_command(jobs)
cli.add_command(train_command)


def main() -> None:
    cli()
