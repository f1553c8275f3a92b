"""Command-line options shared by the ``audit-tool`` commands."""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

URL_FILE_ENV = "AUDIT_DATABASE_URL_FILE"


def _url_from_file() -> str | None:
    """The URL in the file named by ``AUDIT_DATABASE_URL_FILE``, if that is set."""
    path = os.environ.get(URL_FILE_ENV)
    return Path(path).read_text().strip() if path else None


def database_url(required: bool = True) -> Callable[[Any], Any]:
    """``--database-url``, else ``AUDIT_DATABASE_URL``, else the file named by
    ``AUDIT_DATABASE_URL_FILE``: services keep the password in a secret file, out of
    environment files and process listings."""

    def resolve(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        value = value or _url_from_file()
        if value is None and required:
            raise click.MissingParameter(ctx=ctx, param=param)
        return value

    return click.option(
        "--database-url",
        envvar="AUDIT_DATABASE_URL",
        callback=resolve,
        help=f"PostgreSQL URL (or AUDIT_DATABASE_URL, or a file named by {URL_FILE_ENV}).",
    )


def witness_tls() -> Callable[[Any], Any]:
    """``--witness-ca``, ``--witness-cert``, ``--witness-cert-key``: mutual TLS to witnesses."""
    paths = click.Path(exists=True, dir_okay=False, path_type=Path)

    def decorate(command: Any) -> Any:
        for name, env, text in reversed(
            [
                ("--witness-ca", "APPLIANCE_AUDIT_WITNESS_CA", "CA certificates of the witnesses."),
                ("--witness-cert", "APPLIANCE_AUDIT_WITNESS_CERT", "Client certificate (PEM)."),
                ("--witness-cert-key", "APPLIANCE_AUDIT_WITNESS_CERT_KEY", "Its private key."),
            ]
        ):
            command = click.option(name, envvar=env, type=paths, help=text)(command)
        return command

    return decorate


def witness_context(ca: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    """TLS to a witness: its certificate checked against ``ca`` (or the system's), ours shown."""
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key else None)
    return context
