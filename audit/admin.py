"""Operator commands of ``audit-tool``: run the sealer, create checkpoint keys."""

from __future__ import annotations

import os
import signal
import stat
import threading
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import checkpoint as notes
from audit import options
from audit.sealer import Sealer, Signer


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
@click.option("--once", is_flag=True, help="Seal what is pending now, then exit.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=2000)
@click.option(
    "--checkpoint-interval", type=float, default=10.0, help="Seconds between checkpoints."
)
def seal(
    database_url: str,
    signing_key: Path,
    origin: str,
    key_name: str | None,
    once: bool,
    batch_size: int,
    checkpoint_interval: float,
) -> None:
    """Run the sealer (one leader at a time; others stand by)."""
    signer = Signer(origin, key_name or origin, notes.load_private_key(signing_key))
    sealer = Sealer(database_url, signer, batch_size, checkpoint_interval)
    if once:
        click.echo(f"sealed {sealer.run_once()} events", err=True)
        sealer.close()
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sealer.run(stop)


@click.command()
@click.option("--name", required=True, help="Key name; use the log's origin.")
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="Writes OUT.pem and OUT.vkey."
)
def keygen(name: str, out: Path) -> None:
    """Create an Ed25519 checkpoint signing key and its verifier key."""
    private_path, public_path = out.with_suffix(".pem"), out.with_suffix(".vkey")
    if private_path.exists():
        raise click.UsageError(f"{private_path} exists; refusing to overwrite a signing key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_path.write_text(notes.vkey(name, key.public_key()) + "\n", encoding="utf-8")
    click.echo(notes.vkey(name, key.public_key()))
