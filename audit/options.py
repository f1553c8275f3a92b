"""Command-line options shared by the ``audit-tool`` commands."""

from __future__ import annotations

import os
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
