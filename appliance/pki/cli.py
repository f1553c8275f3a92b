"""``appliance pki ...``: the development CA on the command line (dev-only, see the package doc).

Examples::

    appliance pki --dir var/pki init
    appliance pki --dir var/pki issue-server --san DNS:appliance.hospital.internal
    appliance pki --dir var/pki issue-client --name intake --san URI:spiffe://hospital/svc/intake
    appliance pki --dir var/pki revoke --name intake
    appliance pki --dir var/pki crl --days 7
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from appliance.pki.authority import DEFAULT_SERVER_SANS, DevCA, Issued

F = TypeVar("F", bound=Callable[..., Any])


@click.group()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/pki"),
    show_default=True,
    envvar="APPLIANCE_PKI_DIR",
    help="Directory holding the CA and issued files.",
)
@click.pass_context
def pki(ctx: click.Context, directory: Path) -> None:
    """Development certificate authority (dev-only: production uses the hospital's CA)."""
    ctx.obj = directory


def _echo_issued(issued: Issued) -> None:
    click.echo(f"certificate: {issued.cert_path}\nkey: {issued.key_path}")
    click.echo(f"serial: {issued.serial:x}\nnot after: {issued.not_after.isoformat()}")


@pki.command()
@click.option("--cn", default="Appliance Dev CA", show_default=True, help="CA common name.")
@click.option("--days", default=3650, show_default=True, type=click.IntRange(min=1))
@click.option("--force", is_flag=True, help="Replace an existing CA (invalidates everything).")
@click.pass_obj
def init(directory: Path, cn: str, days: int, force: bool) -> None:
    """Create the CA (ca.pem, ca.key) and an empty CRL (crl.pem)."""
    ca = DevCA.init(directory, common_name=cn, days=days, force=force)
    click.echo(f"CA: {ca.cert_path}\nCRL: {ca.crl_path}")


def _validity_options(default_days: int) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        func = click.option(
            "--days",
            default=default_days,
            show_default=True,
            type=click.IntRange(min=1),
            help="Validity in days from now.",
        )(func)
        return click.option(
            "--expired", is_flag=True, help="Issue an already expired certificate (tests)."
        )(func)

    return decorate


@pki.command("issue-server")
@click.option("--name", default="server", show_default=True, help="CN and file stem.")
@click.option("--san", "sans", multiple=True, help="Extra SAN, e.g. DNS:host or IP:10.0.0.5.")
@click.option(
    "--no-default-sans",
    is_flag=True,
    help=f"Do not add the default SANs {', '.join(DEFAULT_SERVER_SANS)}.",
)
@_validity_options(397)
@click.pass_obj
def issue_server(
    directory: Path,
    name: str,
    sans: tuple[str, ...],
    no_default_sans: bool,
    days: int,
    expired: bool,
) -> None:
    """Issue the TLS server certificate (<name>.pem, <name>.key)."""
    all_sans = tuple(sans) if no_default_sans else DEFAULT_SERVER_SANS + tuple(sans)
    issued = DevCA.load(directory).issue_server(name, all_sans, days=days, expired=expired)
    _echo_issued(issued)


@pki.command("issue-client")
@click.option("--name", required=True, help="CN and file stem, e.g. intake.")
@click.option(
    "--san",
    "sans",
    multiple=True,
    help="SAN: URI:spiffe://hospital/svc/NAME, DNS:host or email:person@hospital.example.",
)
@_validity_options(365)
@click.pass_obj
def issue_client(
    directory: Path, name: str, sans: tuple[str, ...], days: int, expired: bool
) -> None:
    """Issue a TLS client certificate (<name>.pem, <name>.key)."""
    issued = DevCA.load(directory).issue_client(name, tuple(sans), days=days, expired=expired)
    _echo_issued(issued)


@pki.command()
@click.option("--name", default=None, help="Revoke every certificate issued under this name.")
@click.option("--serial", default=None, help="Revoke the certificate with this hex serial.")
@click.pass_obj
def revoke(directory: Path, name: str | None, serial: str | None) -> None:
    """Revoke a certificate and rewrite crl.pem."""
    try:
        number = None if serial is None else int(serial, 16)
    except ValueError as exc:
        raise click.BadParameter(
            f"want a hex serial, got {serial!r}", param_hint="--serial"
        ) from exc
    ca = DevCA.load(directory)
    for revoked in ca.revoke(name=name, serial=number):
        click.echo(f"revoked: {revoked:x}")
    click.echo(f"CRL: {ca.crl_path}")


@pki.command()
@click.option(
    "--days",
    default=7,
    show_default=True,
    type=click.IntRange(min=1),
    help="Days until nextUpdate.",
)
@click.option("--expired", is_flag=True, help="Write a CRL whose nextUpdate has passed (tests).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write here instead of <dir>/crl.pem.",
)
@click.pass_obj
def crl(directory: Path, days: int, expired: bool, out: Path | None) -> None:
    """Re-sign the CRL (run it from a timer well before nextUpdate)."""
    path = DevCA.load(directory).write_crl(days=days, expired=expired, out=out)
    click.echo(f"CRL: {path}")
