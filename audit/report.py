"""The integrity report rendered for people (the JSON form is ``service.report``)."""

from __future__ import annotations

from typing import Any


def render_text(body: dict[str, Any]) -> str:
    lines = [
        f"Audit log integrity report ({body['generated_at']})",
        f"Status: {body['status'].upper()}",
    ]
    if "tampering" in body:
        t = body["tampering"]
        lines.append(f"TAMPERING: {t['kind']} at seq {t['seq']}: {t['detail']}")
        for f in t.get("findings", []):
            where = "no event" if f["seq"] is None else f"event seq {f['seq']}"
            lines.append(f"  {f['kind'].replace('_', ' ')}: {f['id'] or '-'} ({where})")
    if "error" in body:
        lines.append(f"Error: {body['error']}")
    if "entries" in body:
        lines += [
            f"Source: {body.get('source')}  key: {body.get('key_name')}",
            f"Entries verified: seq {body['start_seq']}..{body['entries'] - 1}",
            f"Checkpoints verified: {body['checkpoints_verified']}",
            f"Merkle root: {body['root']}",
            f"Entries after the newest checkpoint: {body['unsigned_entries']}",
        ]
        if body.get("latest_checkpoint"):
            lines.append(
                "Newest checkpoint:\n  " + body["latest_checkpoint"]["note"].replace("\n", "\n  ")
            )
    if "cross_check" in body:
        lines.append(f"Cross-checked with the log: {cross_checked(body['cross_check'])}")
    if "witnessed" in body:
        w = body["witnessed"]
        lines.append(f"Witnessed: checkpoint of size {w['size']} cosigned by {w['quorum']}+")
        for url, size in w["witness_views"].items():
            lines.append(f"  {url}: newest cosigned tree (size {size}) is in the log")
    if "pending_events" in body:
        lines.append(f"Events awaiting sealing: {body['pending_events']}")
    for row in body.get("activity", []):
        lines.append(f"  {row['action']:<28} status {row['outcome_status']}: {row['count']}")
    return "\n".join(lines)


def cross_checked(counts: dict[str, Any]) -> str:
    """What the cross-checks compared, and how: through the columns PostgreSQL derives from the
    bytes, or in the bytes themselves when those columns are not generated as migration 0015
    made them (an expression dropped or replaced: worth asking the database's owner why)."""
    tables = ", ".join(
        f"{counts[name]} {name}" if counts.get(name) is not None else f"{name} not checked"
        for name in ("results", "reviews")
    )
    how = (
        "through the columns PostgreSQL derives from the entries"
        if counts.get("derived")
        else "in the entries' bytes: the derived columns are not as migration 0015 made them"
    )
    return f"search columns of {counts['rows']} rows, {tables} ({how})"
