"""The ``appliance`` command: serve, database migrations, configuration check.

Errors become exit codes in one place (``main``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from appliance import migrate
from appliance.classification.taxonomy import load_taxonomy
from appliance.errors import ApplianceError
from appliance.evaluation.cli import classify_command, eval_command, taxonomy
from appliance.identity.roles import RoleConfigError, load_role_map
from appliance.identity.tls import TlsConfigError, tls_settings_from
from appliance.pki.cli import pki
from appliance.settings import Settings

GUNICORN_CONF = Path(__file__).with_name("gunicorn_conf.py")


@click.group()
def cli() -> None:
    """On-premise document classification appliance."""


@cli.command()
def serve() -> None:
    """Run the API under gunicorn (configuration from APPLIANCE_* variables)."""
    os.execvp(  # noqa: S606 - replacing this process with gunicorn is the point
        sys.executable,
        [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "appliance.wsgi:app"],
    )


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
    shown = settings.model_dump(mode="json", exclude={"database_url", "vllm_api_key"})
    click.echo(
        json.dumps(
            {
                "settings": shown,
                "taxonomy_version": taxonomy.version,
                "labels": list(taxonomy.names),
            },
            indent=2,
        )
    )


cli.add_command(pki)
cli.add_command(eval_command)
cli.add_command(classify_command)
cli.add_command(taxonomy)


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ApplianceError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    except (RoleConfigError, TlsConfigError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
