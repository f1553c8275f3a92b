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
        c = body["cross_check"]
        tables = ", ".join(
            f"{c[name]} {name}" if c[name] is not None else f"{name} not checked"
            for name in ("results", "reviews")
        )
        lines.append(f"Cross-checked with the log: {c['rows']} rows' search columns, {tables}")
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
