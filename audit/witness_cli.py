"""``audit-tool witness``: run a witness, make its key."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import click

from audit import checkpoint as notes
from audit.admin import write_private_key
from audit.cosignature import WitnessKey
from audit.signer import Verifier
from audit.witness import Witness, WitnessState, serve

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group()
def witness() -> None:
    """A witness for the audit log (C2SP tlog-witness), best run at another site by others."""


@witness.command("keygen")
@click.option(
    "--name", required=True, help="The witness's name, e.g. witness.site-b.hospital.example"
)
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="Writes OUT.pem, OUT.vkey."
)
def witness_keygen(name: str, out: Path) -> None:
    """Create the witness's Ed25519 key and its verifier key (cosignature/v1)."""
    private = write_private_key(out.with_suffix(".pem"))
    vkey = WitnessKey(name, private.public_key()).vkey
    out.with_suffix(".vkey").write_text(vkey + "\n", encoding="utf-8")
    click.echo(vkey)


@witness.command("serve")
@click.option("--name", required=True, envvar="AUDIT_WITNESS_NAME", help="The witness's key name.")
@click.option("--key", "key_path", required=True, envvar="AUDIT_WITNESS_KEY_PATH", type=FILE)
@click.option(
    "--log-key",
    "log_keys",
    multiple=True,
    required=True,
    type=FILE,
    help="Verifier key (.vkey) of a log this witness accepts; repeat for several.",
)
@click.option(
    "--origin", "origins", multiple=True, help="Each log's origin (default: its key name)."
)
@click.option(
    "--state",
    "state_path",
    required=True,
    envvar="AUDIT_WITNESS_STATE_PATH",
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option("--bind", required=True, envvar="AUDIT_WITNESS_BIND", help="HOST:PORT to listen on.")
@click.option("--tls-cert", required=True, envvar="AUDIT_WITNESS_TLS_CERT", type=FILE)
@click.option("--tls-key", required=True, envvar="AUDIT_WITNESS_TLS_KEY", type=FILE)
@click.option(
    "--tls-client-ca",
    required=True,
    envvar="AUDIT_WITNESS_TLS_CLIENT_CA",
    type=FILE,
    help="CA of the client certificates (the sealer's, auditors').",
)
def witness_serve(
    name: str,
    key_path: Path,
    log_keys: tuple[Path, ...],
    origins: tuple[str, ...],
    state_path: Path,
    bind: str,
    tls_cert: Path,
    tls_key: Path,
    tls_client_ca: Path,
) -> None:
    """Serve add-checkpoint (and /latest) over HTTPS with client certificates required."""
    logging.basicConfig(level=logging.INFO)
    if origins and len(origins) != len(log_keys):
        raise click.UsageError("give one --origin per --log-key, or none")
    logs = []
    for index, path in enumerate(log_keys):
        log_name, public = notes.load_verifier_key(path)
        logs.append(Verifier(log_name, public, origins[index] if origins else log_name))
    keeper = Witness(name, notes.load_private_key(key_path), logs, WitnessState(state_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls_client_ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(str(tls_cert), str(tls_key))
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise click.UsageError(f"--bind: got {bind!r}, want HOST:PORT")
    server = serve(keeper, (host, int(port)), context)
    click.echo(f"witness {name} on https://{bind}", err=True)
    server.serve_forever()
