"""Archive exports from the database: JSON Lines (verifiable offline with the public key, see
``export_file`` for the layout and the reader) and CSV (for people)."""

from __future__ import annotations

import base64
import csv
import json
from collections.abc import Iterator
from typing import IO, Any

import psycopg

from audit import service, store
from audit.chain import event_bytes
from audit.export_file import FORMAT
from audit.proof import Tree
from audit.types import Event

CSV_FIELDS = ("seq", *Event.__dataclass_fields__)


def write_jsonl(
    conn: psycopg.Connection[Any], out: IO[str], start: int = 0, proofs: bool = False
) -> int:
    """Write the sealed log from ``start`` (a checkpoint size, or 0); return entries written."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        head, chain = store.chain_head(conn)
        cps = store.checkpoints(conn)
        out.write(json.dumps({"type": "header", "format": FORMAT, "start": start}) + "\n")
        for cp in cps:
            blob = base64.b64encode(cp.compact_range).decode()
            line = {"type": "checkpoint", "size": cp.size, "note": cp.note, "compact_range": blob}
            out.write(json.dumps(line) + "\n")
        out.write(json.dumps({"type": "head", "seq": head, "chain_hash": chain.hex()}) + "\n")
        tree, size = None, 0
        if proofs and cps:
            size = cps[-1].size
            tree = Tree(service.leaves(conn, size))
        count = 0
        for seq, entry, digest, chain_hash in store.stream_entries(conn, start):
            line = {
                "type": "entry",
                "seq": seq,
                "entry": base64.b64encode(entry).decode(),
                "entry_hash": digest.hex(),
                "chain_hash": chain_hash.hex(),
                "event": json.loads(event_bytes(entry)),
            }
            if tree is not None and seq < size:
                hashes = [base64.b64encode(h).decode() for h in tree.inclusion(seq, size)]
                line["proof"] = {"tree_size": size, "hashes": hashes}
            out.write(json.dumps(line, sort_keys=True) + "\n")
            count += 1
    return count


def write_csv(rows: Iterator[tuple[int, bytes]], out: IO[str]) -> int:
    """One line per entry with the decoded fields; cells that a spreadsheet would evaluate as a
    formula are prefixed with a quote."""
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
    writer.writeheader()
    count = 0
    for seq, entry in rows:
        record = service.entry_json(seq, entry)
        writer.writerow({k: _cell(v) for k, v in record.items()})
        count += 1
    return count


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
