"""Operator commands of ``audit-tool``: run the sealer, create checkpoint keys."""

from __future__ import annotations

import os
import signal
import stat
import threading
from pathlib import Path
from typing import TextIO

import click
import prometheus_client
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import checkpoint as notes
from audit import options
from audit.cosignature import load_witness_key
from audit.sealer import Sealer
from audit.sealer_state import SealerState
from audit.signer import Signer
from audit.witness_client import Submitter, WitnessEndpoint


@click.command()
@options.database_url()
@click.option(
    "--signing-key",
    envvar="APPLIANCE_AUDIT_SIGNING_KEY_PATH",
    required=True,
    type=click.Path(exists=True, path_type=Path),
)
@click.option("--origin", envvar="APPLIANCE_AUDIT_ORIGIN", required=True)
@click.option("--key-name", help="Signer name (default: the origin).")
@click.option(
    "--state-file",
    envvar="APPLIANCE_AUDIT_SEALER_STATE_PATH",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The last checkpoint this sealer signed (default: beside the signing key, .state).",
)
@click.option("--once", is_flag=True, help="Seal what is pending now, then exit.")
@click.option(
    "--accept-restore",
    "accept_restore",
    type=click.File("r", encoding="utf-8"),
    help="After a restore: accept this signed checkpoint (a file with the note, held by the"
    " restored database) as the base of every later one, record the gap in the log, and exit.",
)
@click.option(
    "--rotate-to",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Hand checkpoint signing over to this new key (PEM), recorded in the log, and exit;"
    " then run the sealer with it. Verifiers keep the first key pinned.",
)
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=2000)
@click.option(
    "--checkpoint-interval",
    type=click.FloatRange(min=0.1),
    default=0.5,
    show_default=True,
    help="Least seconds between checkpoints: one is signed once entries wait and this long has"
    " passed since the last (receipts within about a second; at most 2 checkpoints a second).",
)
@click.option(
    "--metrics-bind",
    envvar="APPLIANCE_AUDIT_SEALER_METRICS_BIND",
    help="HOST:PORT for the sealer's Prometheus metrics (plain HTTP; no event content).",
)
@click.option(
    "--witness",
    "witnesses",
    multiple=True,
    envvar="APPLIANCE_AUDIT_WITNESSES",
    help="A witness as VKEY_FILE=URL (its verifier key and https://host:port); repeat for"
    " several (in the environment: separated by spaces).",
)
@options.witness_tls()
def seal(
    database_url: str,
    signing_key: Path,
    origin: str,
    key_name: str | None,
    state_file: Path | None,
    once: bool,
    accept_restore: TextIO | None,
    rotate_to: Path | None,
    batch_size: int,
    checkpoint_interval: float,
    metrics_bind: str | None,
    witnesses: tuple[str, ...],
    witness_ca: Path | None,
    witness_cert: Path | None,
    witness_cert_key: Path | None,
) -> None:
    """Run the sealer (one leader at a time; others stand by). It never signs a log that does
    not extend the last checkpoint it signed: see docs/auditors.md on restores."""
    signer = Signer(origin, key_name or origin, notes.load_private_key(signing_key))
    state = SealerState(state_file or signing_key.with_name(signing_key.name + ".state"))
    submitter = None
    if witnesses:
        tls = options.witness_context(witness_ca, witness_cert, witness_cert_key)
        submitter = Submitter(database_url, [_endpoint(spec) for spec in witnesses], tls)
    sealer = Sealer(database_url, signer, state, batch_size, checkpoint_interval, submitter)
    if accept_restore is not None:
        size = sealer.accept_restore(accept_restore.read())
        click.echo(f"restore accepted; the gap is recorded under checkpoint {size}", err=True)
        return
    if rotate_to is not None:
        successor = Signer(origin, signer.name, notes.load_private_key(rotate_to))
        size = sealer.rotate_key(successor)
        click.echo(f"checkpoint {size} hands signing over to {successor.verifier.vkey}", err=True)
        return
    if metrics_bind:
        host, _, port = metrics_bind.rpartition(":")
        prometheus_client.start_http_server(int(port), host or "127.0.0.1")
    if once:
        click.echo(f"sealed {sealer.run_once()} events", err=True)
        sealer.close()
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sealer.run(stop)


def write_private_key(path: Path) -> Ed25519PrivateKey:
    """A new Ed25519 key in ``path`` (PEM, mode 0600); never overwrites a key."""
    if path.exists():
        raise click.UsageError(f"{path} exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key


def _endpoint(spec: str) -> WitnessEndpoint:
    vkey, sep, url = spec.partition("=")
    if not sep or not url.startswith("https://"):
        raise click.UsageError(f"--witness: got {spec!r}, want VKEY_FILE=https://host:port")
    return WitnessEndpoint(url, load_witness_key(Path(vkey)))


@click.command()
@click.option("--name", required=True, help="Key name; use the log's origin.")
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="Writes OUT.pem and OUT.vkey."
)
def keygen(name: str, out: Path) -> None:
    """Create an Ed25519 checkpoint signing key and its verifier key."""
    key = write_private_key(out.with_suffix(".pem"))
    out.with_suffix(".vkey").write_text(notes.vkey(name, key.public_key()) + "\n", encoding="utf-8")
    click.echo(notes.vkey(name, key.public_key()))
