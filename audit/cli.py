"""``audit-tool``: the auditors' command line. Needs no Flask and no appliance configuration.

Exit codes (mapped in one place, ``main``): 0 success, 1 tampering detected, 2 any other error.
Database commands read ``--database-url`` (or ``AUDIT_DATABASE_URL``, or the file named by
``AUDIT_DATABASE_URL_FILE``); a read-only role
(``appliance_auditor``) is enough for everything except ``seal``.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click

from audit import checkpoint as notes
from audit import export, options, receipt, report_data, service, store
from audit.admin import keygen, seal
from audit.cosignature import WitnessKey, load_witness_key
from audit.crosscheck import cross_check
from audit.errors import AuditError, TamperingDetected
from audit.export_file import read_jsonl
from audit.integrity import Trust, VerifyResult, verify_log
from audit.parallel import verify_parallel
from audit.pseudonym import load_key, pseudonymise
from audit.report import render_text
from audit.report_html import render_html
from audit.types import Checkpoint
from audit.witness_check import check_quorum, check_witness_view
from audit.witness_cli import witness
from audit.witness_client import fetch_latest

DB = options.database_url()
KEY = click.option(
    "--public-key",
    "--key",
    "public_key",
    envvar="AUDIT_PUBLIC_KEY",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Verifier key file (name+id+base64, written by keygen).",
)

WORKERS = click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=min(os.cpu_count() or 1, 4),
    show_default=True,
    help="Processes verifying the log from PostgreSQL in parallel (1 = sequential).",
)


@click.group()
def cli() -> None:
    """Verify, search, export and prove the appliance's tamper-evident audit log."""


def _trust(path: Path, origin: str | None) -> Trust:
    name, public = notes.load_verifier_key(path)
    return Trust(name, public, origin)


def _emit(data: Any, out: IO[str] | None = None) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True), file=out)


def _run_verify(
    database_url: str | None,
    export_file: Path | None,
    trust: Trust,
    trusted: Checkpoint | None,
    workers: int,
    allow_pruned: bool = False,
    records: bool = True,
) -> tuple[VerifyResult | None, AuditError | None, dict[str, Any]]:
    """Verify the log; from a database, then cross-check what repeats it (the search columns
    and, with ``records``, the results and reviews it can read)."""
    extra: dict[str, Any] = {"origin": trust.origin, "key_name": trust.name}
    try:
        if export_file is not None:
            extra["source"] = str(export_file)
            with export_file.open(encoding="utf-8") as lines:
                data = read_jsonl(iter(lines))
                result = verify_log(
                    data.rows, data.checkpoints, trust, data.head_seq, trusted, allow_pruned
                )
        elif database_url is not None:
            extra["source"] = "postgresql"
            result = verify_parallel(
                database_url, trust, trusted, workers, allow_pruned=allow_pruned
            )
            with store.connect(database_url) as conn:
                checked = cross_check(conn, records)
                extra["cross_check"], extra["activity"] = checked.summary(), checked.activity
                pending = conn.execute("SELECT count(*) FROM audit_pending").fetchone()
                extra["pending_events"] = pending[0] if pending else 0
        else:
            raise click.UsageError("give --database-url or --export")
    except AuditError as exc:
        return None, exc, extra
    return result, None, extra


@cli.command()
@options.database_url(required=False)
@click.option(
    "--export",
    "export_file",
    type=click.Path(exists=True, path_type=Path),
    help="Verify an export file offline instead.",
)
@KEY
@click.option("--origin", help="Expected checkpoint origin line.")
@click.option(
    "--from-checkpoint",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Signed checkpoint note kept earlier: verify only what came after it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report.")
@click.option(
    "--allow-pruned",
    is_flag=True,
    help="Accept a log (or export) that starts at a signed checkpoint above seq 0.",
)
@WORKERS
@click.option(
    "--no-results",
    "no_results",
    is_flag=True,
    help="Do not cross-check the results and reviews tables against the log.",
)
@click.option(
    "--witness",
    "witness_keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A witness's verifier key: require its cosignature on the newest checkpoint.",
)
@click.option(
    "--quorum", type=click.IntRange(1), help="Cosignatures required (default: every --witness)."
)
@click.option(
    "--witness-url",
    "witness_urls",
    multiple=True,
    help="Ask this witness (https://host:port) for the newest tree it cosigned; the log must"
    " contain it.",
)
@click.option(
    "--witness-grace",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds a new checkpoint may wait for its cosignatures.",
)
@options.witness_tls()
def verify(
    database_url: str | None,
    export_file: Path | None,
    public_key: Path,
    origin: str | None,
    from_checkpoint: Path | None,
    as_json: bool,
    allow_pruned: bool,
    workers: int,
    no_results: bool,
    witness_keys: tuple[Path, ...],
    quorum: int | None,
    witness_urls: tuple[str, ...],
    witness_grace: float,
    witness_ca: Path | None,
    witness_cert: Path | None,
    witness_cert_key: Path | None,
) -> None:
    """Verify the whole log (or everything after a trusted checkpoint), then that the search
    columns and the results and reviews tables agree with it; with --witness, also that
    witnesses cosigned it."""
    trust = _trust(public_key, origin)
    trusted = None
    if from_checkpoint is not None:
        note = from_checkpoint.read_text(encoding="utf-8")
        trusted = notes.open_note(note, trust.name, trust.public, origin).checkpoint
    result, problem, extra = _run_verify(
        database_url, export_file, trust, trusted, workers, allow_pruned, not no_results
    )
    if problem is None and (witness_keys or witness_urls):
        if database_url is None:
            raise click.UsageError("witness checks need --database-url (cosignatures are there)")
        keys = [load_witness_key(path) for path in witness_keys]
        if not keys:
            raise click.UsageError("--witness-url needs the witness's key (--witness)")
        tls = options.witness_context(witness_ca, witness_cert, witness_cert_key)
        try:
            extra["witnessed"] = _witnessed(
                database_url, keys, quorum or len(keys), witness_urls, witness_grace, tls, trust
            )
        except AuditError as exc:
            problem = exc
    body = service.report(result, problem, **extra)
    if as_json:
        _emit(body)
    else:
        click.echo(render_text(body))
    if problem is not None:
        raise problem


def _witnessed(
    database_url: str,
    keys: list[WitnessKey],
    quorum: int,
    urls: tuple[str, ...],
    grace_s: float,
    tls: ssl.SSLContext,
    trust: Trust,
) -> dict[str, Any]:
    """The witness checks of ``verify`` (each witness's own view first: it names a fork);
    raise ``TamperingDetected`` when they fail."""
    with store.connect(database_url) as conn:
        origin = trust.origin or trust.name
        views = {
            url: check_witness_view(conn, fetch_latest(url, origin, tls), keys) for url in urls
        }
        size = check_quorum(conn, keys, quorum, grace_s)
    return {"quorum": quorum, "size": size, "witness_views": views}


@cli.command()
@DB
@KEY
@click.option("--origin")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@click.option(
    "--html",
    "as_html",
    is_flag=True,
    help="One self-contained HTML page with plots, for compliance officers (use --output).",
)
@click.option("--output", type=click.File("w"), default="-")
@WORKERS
def report(
    database_url: str,
    public_key: Path,
    origin: str | None,
    as_json: bool,
    as_html: bool,
    output: IO[str],
    workers: int,
) -> None:
    """Integrity report for people (text, or --html) or machines (--json); exits 1 on
    tampering (after writing the report)."""
    if as_json and as_html:
        raise click.UsageError("--json and --html are mutually exclusive")
    trust = _trust(public_key, origin)
    result, problem, extra = _run_verify(database_url, None, trust, None, workers)
    body = service.report(result, problem, **extra)
    if as_html:
        output.write(_html_report(database_url, body))
    elif as_json:
        _emit(body, output)
    else:
        click.echo(render_text(body), file=output)
    if problem is not None:
        raise problem


def _html_report(database_url: str, body: dict[str, Any]) -> str:
    """The HTML page; when its figures cannot be read it still shows the verdict, and why."""
    try:
        data = report_data.collect(database_url)
    except AuditError as exc:
        return render_html(body, None, str(exc))
    return render_html(body, data)


@cli.command()
@DB
@click.option("--actor")
@click.option(
    "--document-id",
    "--document",
    "document",
    help="Document id (or content hash): pseudonymised with --pseudonym-key, as the log has it.",
)
@click.option(
    "--pseudonym-key",
    envvar="AUDIT_PSEUDONYM_KEY_PATH",
    type=click.Path(exists=True, path_type=Path),
    help="The appliance's pseudonym key file (needs read access to it).",
)
@click.option("--action")
@click.option("--outcome", type=int, help="HTTP status.")
@click.option("--since", type=click.DateTime(), help="UTC, inclusive.")
@click.option("--until", type=click.DateTime(), help="UTC, exclusive.")
@click.option("--after-seq", type=int, default=-1)
@click.option("--limit", type=click.IntRange(1, 100_000), default=100)
def search(
    database_url: str,
    actor: str | None,
    document: str | None,
    pseudonym_key: Path | None,
    action: str | None,
    outcome: int | None,
    since: datetime | None,
    until: datetime | None,
    after_seq: int,
    limit: int,
) -> None:
    """Sealed events matching all the filters, as JSON Lines."""
    resource = document
    if document is not None and pseudonym_key is not None:
        resource = pseudonymise(load_key(pseudonym_key), document)
    where = store.SearchFilter(
        actor, resource, action, outcome, _utc(since), _utc(until), after_seq, limit
    )
    with store.connect(database_url) as conn:
        for seq, entry in store.search(conn, where):
            click.echo(json.dumps(service.entry_json(seq, entry), sort_keys=True))


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


@cli.command(name="export")
@DB
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl")
@click.option("--output", type=click.File("w"), default="-")
@click.option("--start", type=int, default=0, help="First seq (a checkpoint size, for archives).")
@click.option("--proofs", is_flag=True, help="Add inclusion proofs (JSONL).")
def export_cmd(database_url: str, fmt: str, output: IO[str], start: int, proofs: bool) -> None:
    """Export the sealed log: JSONL verifies offline, CSV is for reading."""
    with store.connect(database_url) as conn:
        if fmt == "jsonl":
            count = export.write_jsonl(conn, output, start, proofs)
        else:
            rows = ((seq, entry) for seq, entry, _, _ in store.stream_entries(conn, start))
            count = export.write_csv(rows, output)
    click.echo(f"exported {count} entries", err=True)


@cli.group()
def proof() -> None:
    """RFC 9162 proofs against signed checkpoints."""


@proof.command()
@DB
@click.option("--seq", type=int, required=True)
@click.option("--tree-size", type=int, help="Checkpoint size (default: the newest).")
def inclusion(database_url: str, seq: int, tree_size: int | None) -> None:
    """Inclusion proof of one entry."""
    with store.connect(database_url) as conn:
        _emit(service.inclusion(conn, seq, tree_size))


@proof.command()
@DB
@click.option("--from", "size1", type=int, required=True)
@click.option("--to", "size2", type=int, required=True)
def consistency(database_url: str, size1: int, size2: int) -> None:
    """Consistency proof between two checkpoints."""
    with store.connect(database_url) as conn:
        _emit(service.consistency(conn, size1, size2))


@cli.command("verify-receipt")
@click.argument("receipt_file", type=click.File("r", encoding="utf-8"))
@KEY
@click.option("--origin", help="Expected checkpoint origin line.")
def verify_receipt(receipt_file: IO[str], public_key: Path, origin: str | None) -> None:
    """Check a classification's receipt offline (GET /api/v1/classifications/<id>/receipt):
    the checkpoint's signature, the entry's inclusion; print the event it proves. Exits 1 if
    it does not verify."""
    verified = receipt.verify(receipt.parse(receipt_file.read()), _trust(public_key, origin))
    _emit(
        {
            "status": "ok",
            "seq": verified.index,
            "tree_size": verified.tree_size,
            "event": service.event_json(verified.event),
        }
    )


cli.add_command(seal)
cli.add_command(keygen)
cli.add_command(witness)


def main(argv: list[str] | None = None) -> None:
    """Entry point: the one place errors become exit codes."""
    try:
        cli.main(args=argv, prog_name="audit-tool", standalone_mode=False)
    except TamperingDetected as exc:
        click.echo(f"audit-tool: TAMPERING DETECTED: {exc}", err=True)
        sys.exit(1)
    except AuditError as exc:
        click.echo(f"audit-tool: error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    sys.exit(0)
