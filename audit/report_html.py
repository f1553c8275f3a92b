"""The integrity report as one self-contained HTML page for compliance officers.

No external URL, no script: inline CSS and the plots as inline SVG, so the file can be mailed,
archived and opened offline. Every value that comes from the database (actor names come from
client certificates) is escaped here or by matplotlib's SVG writer, and the page is ASCII with
character references, whatever encoding the output file was opened with. matplotlib is imported
only when a page is rendered, so the other ``audit-tool`` commands do not pay for it.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from audit.report import cross_checked
from audit.report_data import DENIED, ActorDenials, CheckpointPoint, DailyCount, ReportData

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from numpy.typing import NDArray

NO_IDENTITY = "(no identity)"
MAX_SERIES = 8
"""Action/outcome pairs coloured in the daily plot; the rest are stacked as "other"."""
MAX_PLOTTED_ACTORS = 15
MAX_MARKERS = 200
"""Checkpoints drawn as dots; beyond this the step line alone reads better."""
WIDTH_IN = 9.0
"""Figure width in inches (the page's column is about this wide)."""
LABEL_CHARS = 40
"""Actor names are cut to this in the plot's labels (the table has them whole)."""

SUCCESS_COLOURS = ("#1f77b4", "#2ca02c", "#17becf", "#9467bd", "#8c564b", "#bcbd22")
DENIED_COLOURS = ("#d62728", "#ff7f0e", "#e377c2", "#fdae6b")
OTHER_COLOURS = ("#7f7f7f", "#525252", "#c7c7c7")
UNAUTHENTICATED_COLOUR, FORBIDDEN_COLOUR = "#ff7f0e", "#d62728"

CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #1a1a1a;
  padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ccc; }
.meta { color: #555; margin-top: 0; }
.status { border-radius: 6px; padding: 1rem 1.4rem; margin: 1.2rem 0; color: #fff; }
.status .word { font-size: 2.4rem; font-weight: 700; letter-spacing: .05em; }
.status p { margin: .3rem 0 0; font-size: 1.05rem; }
.status-ok { background: #1e7b34; }
.status-tampered { background: #b00020; }
.status-error { background: #8a5a00; }
table { border-collapse: collapse; margin: .8rem 0; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.facts th { width: 16rem; }
code { font-size: .9em; word-break: break-all; }
figure { margin: .8rem 0; }
figure svg { width: 100%; height: auto; }
.wide { overflow-x: auto; }
#daily-table th { font-size: .85rem; }
#daily-table td:first-child, #denials-table td { white-space: nowrap; }
#denials-table td:first-child { white-space: normal; word-break: break-all; max-width: 30rem; }
#findings { margin: .4rem 0 0; }
td.total { font-weight: 600; }
.note { color: #555; font-size: .92rem; }
"""


def _e(value: object) -> str:
    """Escape for element text and quoted attributes: database values are attacker-influenced."""
    return html.escape(str(value), quote=True)


def _time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds")


def actor_name(actor: str | None) -> str:
    """How a denial's actor is shown: ``None`` means the request presented no identity."""
    return NO_IDENTITY if actor is None else actor


# --- SVG plots -------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas, without pyplot: no GUI backend, no global figure registry."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


_TAG = re.compile(r"<[^>]*>")
_ID_REF = re.compile(r'(\bid="|href="#|url\(#)([^")]+)')


def _scope_ids(svg: str, scope: str) -> str:
    """Prefix every id and internal reference with ``scope``: several SVGs share one page.

    Only tags are rewritten; text can hold no raw ``<`` (matplotlib escapes it), so every
    ``<...>`` match is markup."""

    def tag(match: re.Match[str]) -> str:
        return _ID_REF.sub(lambda ref: f"{ref[1]}{scope}-{ref[2]}", match[0])

    return _TAG.sub(tag, svg)


def _svg(fig: Figure, scope: str) -> str:
    """The figure as an inline ``<svg>`` element, without the XML prologue and DOCTYPE (whose
    DTD URL has no place in a self-contained page) and without metadata."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata=dict.fromkeys(("Creator", "Date", "Format", "Type")))
    text = buffer.getvalue()
    return _scope_ids(text[text.index("<svg") :], scope)


def _render(scope: str, height: float, draw: Callable[..., None], *args: object) -> str:
    """``draw(axes, *args)`` on a new figure, returned as SVG.

    Text stays text (searchable, and escaped by the SVG writer) and is never parsed as
    mathtext: a ``$`` in an actor name must not change how it renders, or fail."""
    import matplotlib

    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": scope,
            "text.parse_math": False,
            "font.size": 9.0,
            "date.converter": "concise",
        }
    ):
        fig = _figure(WIDTH_IN, height)
        draw(fig.subplots(), *args)
        return _svg(fig, scope)


def _utc_naive(moments: Iterable[dt.datetime]) -> NDArray[np.datetime64]:
    """UTC times as numpy datetimes: what the typed plotting API takes for a date axis."""
    import numpy as np

    naive = [m.astimezone(dt.UTC).replace(tzinfo=None) for m in moments]
    return np.array(naive, dtype="datetime64[us]")


def _draw_checkpoints(ax: Axes, points: Sequence[CheckpointPoint]) -> None:
    """Tree size as a step: it stays flat while nothing is sealed and signed."""
    times = _utc_naive(p.created_at for p in points)
    sizes = [p.size for p in points]
    marker = "o" if len(points) <= MAX_MARKERS else ""
    (line,) = ax.step(times, sizes, where="post", marker=marker, markersize=3, color="#1f77b4")
    line.set_gid("line")
    ax.set_ylabel("tree size (entries)")
    ax.set_xlabel("checkpoint created (UTC)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)


Series = tuple[str, int] | None
"""An action/outcome pair of the daily plot; ``None`` is "other" (the pairs past the busiest)."""


def _series(rows: Iterable[DailyCount]) -> list[tuple[str, int]]:
    """Action/outcome pairs, busiest first: the ones that get their own colour."""
    totals: dict[tuple[str, int], int] = defaultdict(int)
    for row in rows:
        totals[(row.action, row.outcome_status)] += row.count
    return sorted(totals, key=lambda pair: (-totals[pair], pair))


def _kind(series: Series) -> str:
    """Success in blues and greens, denials in reds and oranges, anything else in greys."""
    status = 0 if series is None else series[1]
    return "ok" if 200 <= status < 400 else "denied" if status in DENIED else "other"


COLOURS = {"ok": SUCCESS_COLOURS, "denied": DENIED_COLOURS, "other": OTHER_COLOURS}


def _stacks(rows: Sequence[DailyCount]) -> tuple[list[dt.date], dict[Series, dict[dt.date, int]]]:
    """The days, and per series its count by day; the pairs past ``MAX_SERIES`` are summed as
    "other"."""
    stacks: dict[Series, dict[dt.date, int]] = {
        pair: defaultdict(int) for pair in _series(rows)[:MAX_SERIES]
    }
    for row in rows:
        pair: Series = (row.action, row.outcome_status)
        if pair not in stacks:
            pair = None
        stacks.setdefault(pair, defaultdict(int))[row.day] += row.count
    return _days(rows), stacks


def _days(rows: Sequence[DailyCount]) -> list[dt.date]:
    """Every day from the first to the last (``rows`` are in day order), quiet ones too: a day
    without events is worth seeing."""
    first, last = rows[0].day, rows[-1].day
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def _draw_daily(ax: Axes, rows: Sequence[DailyCount]) -> None:
    """Stacked bars per UTC day, one segment per action/outcome pair."""
    import numpy as np

    days, stacks = _stacks(rows)
    bottom = dict.fromkeys(days, 0)
    used: dict[str, int] = defaultdict(int)
    for number, (series, by_day) in enumerate(stacks.items()):
        kind = _kind(series)
        colour = COLOURS[kind][used[kind] % len(COLOURS[kind])]
        used[kind] += 1
        label = "other" if series is None else f"{series[0]} {series[1]}"
        shown = [day for day in days if by_day.get(day)]
        heights = [by_day[day] for day in shown]
        below = [bottom[day] for day in shown]
        x = np.array(shown, dtype="datetime64[D]")
        bars = ax.bar(x, heights, bottom=below, color=colour, label=label, width=0.8)
        for index, bar in enumerate(bars):
            bar.set_gid(f"bar-{number}-{index}")
        for day, height in zip(shown, heights, strict=True):
            bottom[day] += height
    ax.set_ylabel("sealed events")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)


def _short(name: str) -> str:
    return name if len(name) <= LABEL_CHARS else name[: LABEL_CHARS - 1] + "\u2026"


def _draw_denials(ax: Axes, denials: Sequence[ActorDenials]) -> None:
    """Horizontal bars per actor, busiest on top, split into 401 and 403."""
    shown = list(denials[:MAX_PLOTTED_ACTORS])
    labels = [_short(actor_name(d.actor)) for d in shown]
    positions = list(range(len(shown)))
    unauthenticated = [d.unauthenticated for d in shown]
    parts = (
        ("401", unauthenticated, [0] * len(shown), UNAUTHENTICATED_COLOUR),
        ("403", [d.forbidden for d in shown], unauthenticated, FORBIDDEN_COLOUR),
    )
    for status, widths, left, colour in parts:
        bars = ax.barh(positions, widths, left=left, color=colour, label=f"status {status}")
        for index, bar in enumerate(bars):
            if widths[index]:
                bar.set_gid(f"bar-{status}-{index}")
    ax.set_yticks(positions, labels)
    ax.invert_yaxis()
    ax.set_xlabel("denied requests")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)


# --- HTML sections ---------------------------------------------------------------------------


def _status(body: dict[str, Any]) -> str:
    """The verdict, big and coloured: what a reader must not miss."""
    status = str(body["status"])
    if "tampering" in body:
        t = body["tampering"]
        line = f"{_e(t['kind'])} at seq {_e(t['seq'])}: {_e(t['detail'])}"
        detail = f'<p>Tampering detected: <span class="kind">{line}</span></p>'
        detail += _findings(t.get("findings", []))
    elif "error" in body:
        detail = f"<p>Verification could not complete: {_e(body['error'])}</p>"
    else:
        detail = "<p>Every sealed entry verified against the signed checkpoints.</p>"
    return (
        f'<section id="status" class="status status-{_e(status)}">'
        f'<div class="word">{_e(status.upper())}</div>{detail}</section>'
    )


def _findings(findings: list[dict[str, Any]]) -> str:
    """Each disagreement a cross-check found (records or search columns against the log)."""
    if not findings:
        return ""
    items = "".join(
        f"<li>{_e(str(f['kind']).replace('_', ' '))}: {_e(f['detail'])}</li>" for f in findings
    )
    return f'<ul id="findings">{items}</ul>'


def _newest_checkpoint(body: dict[str, Any], data: ReportData | None) -> str:
    """Size and time of the newest checkpoint: the verified one, else the table's (marked)."""
    times = {p.size: p.created_at for p in data.checkpoints} if data else {}
    latest = body.get("latest_checkpoint")
    if latest is not None:
        size, mark = int(latest["size"]), ""
    elif data and data.checkpoints:
        size, mark = data.checkpoints[-1].size, " (stored, not verified)"
    else:
        return "none"
    when = f", created {_e(_time(times[size]))}" if size in times else ""
    return f"size {_e(size)}{when}{mark}"


def _pending(body: dict[str, Any], data: ReportData | None) -> object:
    """Counted by verification when it completed, else by the figures' snapshot."""
    if "pending_events" in body:
        return body["pending_events"]
    return "unknown" if data is None else data.pending


def _origin(body: dict[str, Any]) -> str:
    """The expected origin the checkpoints were checked against, else the one they are signed
    with (the note's first line), marked as not checked."""
    if body.get("origin"):
        return _e(body["origin"])
    latest = body.get("latest_checkpoint")
    if latest is None:
        return "(not checked)"
    signed = str(latest["note"]).split("\n", 1)[0]
    return f"{_e(signed)} (as signed; not checked: no --origin)"


def _verified_entries(body: dict[str, Any]) -> str:
    if "entries" not in body:
        return "not verified"
    start, size = int(body["start_seq"]), int(body["entries"])
    return f"{size - start} (seq {start}..{size - 1})" if size > start else "0"


def _facts(body: dict[str, Any], data: ReportData | None) -> str:
    """The report's numbers as a two-column table."""
    rows = [
        ("Entries verified", _verified_entries(body)),
        ("Checkpoints verified", _e(body.get("checkpoints_verified", "not verified"))),
        ("Newest checkpoint", _newest_checkpoint(body, data)),
        ("Entries after the newest checkpoint", _e(body.get("unsigned_entries", "unknown"))),
        ("Events awaiting sealing", _e(_pending(body, data))),
        ("Merkle root", f"<code>{_e(body['root'])}</code>" if "root" in body else "none"),
        ("Verifier key", _e(body.get("key_name"))),
        ("Origin", _origin(body)),
        ("Source", _e(body.get("source", ""))),
        ("Report generated", _e(body["generated_at"])),
    ]
    if "cross_check" in body:
        rows.append(("Cross-checked with the log", _e(cross_checked(body["cross_check"]))))
    if "witnessed" in body:
        w = body["witnessed"]
        rows.append(("Witnessed", f"size {_e(w['size'])} cosigned by {_e(w['quorum'])}+"))
    cells = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    return f'<table id="facts" class="facts">{cells}</table>'


def _table(table_id: str, head: Sequence[str], rows: Iterable[Sequence[str]], numeric: int) -> str:
    """A table of already-escaped cells; the last ``numeric`` columns are right-aligned."""
    header = "".join(f"<th>{h}</th>" for h in head)
    first_number = len(head) - numeric
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{c}</td>' if i >= first_number else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f'<table id="{table_id}"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'


def _checkpoints_section(points: Sequence[CheckpointPoint]) -> str:
    if not points:
        return "<p>No checkpoint has been signed yet.</p>"
    plot = _render("checkpoints", 2.6, _draw_checkpoints, points)
    first, last = points[0], points[-1]
    return (
        f'<figure id="checkpoints-plot">{plot}</figure>'
        f'<p class="note">{len(points)} checkpoints, from size {first.size} at'
        f" {_e(_time(first.created_at))} to size {last.size} at {_e(_time(last.created_at))}.</p>"
    )


def _daily_section(rows: Sequence[DailyCount]) -> str:
    if not rows:
        return "<p>No sealed events.</p>"
    plot = _render("daily", 3.2, _draw_daily, rows)
    return f'<figure id="daily-plot">{plot}</figure><div class="wide">{_daily_table(rows)}</div>'


def _breakable(name: str) -> str:
    """An action name that may wrap after its underscores, so many columns still fit."""
    return _e(name).replace("_", "_<wbr>")


def _daily_table(rows: Sequence[DailyCount]) -> str:
    """One row per day and one column per action/outcome pair, so a day reads across; blank
    cells are zero. Headers carry the pair as data attributes for tools that read the page."""
    pairs = sorted({(r.action, r.outcome_status) for r in rows})
    counts = {(r.day, r.action, r.outcome_status): r.count for r in rows}
    head = "".join(
        f'<th data-action="{_e(a)}" data-status="{_e(s)}">{_breakable(a)}<br>{_e(s)}</th>'
        for a, s in pairs
    )
    body = "".join(
        f"<tr><td>{_e(day.isoformat())}</td>"
        + "".join(f'<td class="num">{_e(counts.get((day, *pair), ""))}</td>' for pair in pairs)
        + f'<td class="num total">{sum(counts.get((day, *pair), 0) for pair in pairs)}</td></tr>'
        for day in _days(rows)
    )
    return (
        f'<table id="daily-table"><thead><tr><th>Day (UTC)</th>{head}<th>Total</th></tr>'
        f"</thead><tbody>{body}</tbody></table>"
    )


def _denials_section(denials: Sequence[ActorDenials], more: bool) -> str:
    if not denials:
        return "<p>No request was denied (no 401 or 403 outcome).</p>"
    height = 0.9 + 0.3 * min(len(denials), MAX_PLOTTED_ACTORS)
    plot = _render("denials", height, _draw_denials, denials)
    cells = [
        (
            _e(actor_name(d.actor)),
            _e(_time(d.first)),
            _e(_time(d.last)),
            _e(d.unauthenticated),
            _e(d.forbidden),
            _e(d.total),
        )
        for d in denials
    ]
    head = ("Actor", "First (UTC)", "Last (UTC)", "401", "403", "Total")
    table = _table("denials-table", head, cells, 3)
    note = ""
    if len(denials) > MAX_PLOTTED_ACTORS:
        note += f'<p class="note">The plot shows the {MAX_PLOTTED_ACTORS} most denied actors.</p>'
    if more:
        note += f'<p class="note">Only the {len(denials)} most denied actors are listed.</p>'
    return f'<figure id="denials-plot">{plot}</figure>{table}{note}'


def _figures(data: ReportData | None, unavailable: str | None) -> str:
    """The three plotted sections, or why they are missing."""
    if data is None:
        return f'<p id="figures-unavailable">Activity figures unavailable: {_e(unavailable)}</p>'
    return (
        "<h2>Checkpoints over time</h2>"
        + _checkpoints_section(data.checkpoints)
        + "<h2>Events per day by action and outcome</h2>"
        + _daily_section(data.daily)
        + "<h2>Denials by actor</h2>"
        + _denials_section(data.denials, data.more_actors)
    )


def _caveat(body: dict[str, Any]) -> str:
    """What the figures rest on: the search columns, proven only when they were cross-checked
    against the hashed entries."""
    if "cross_check" in body:
        columns = "which were cross-checked against the hashed entries"
    else:
        columns = "which this verification does not cover"
    return (
        '<p class="note">The status comes from verifying every entry, its hashes and the signed'
        f" checkpoints. The activity figures are counted from the log's search columns, {columns};"
        " look into a figure that matters with <code>audit-tool search</code> and"
        " <code>audit-tool proof inclusion</code>. Days are UTC.</p>"
    )


def render_html(
    body: dict[str, Any], data: ReportData | None, unavailable: str | None = None
) -> str:
    """The whole page for ``service.report``'s ``body`` and the figures (``None`` when they
    could not be read: ``unavailable`` says why)."""
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Audit log integrity report {_e(body['generated_at'])}</title>"
        f"<style>{CSS}</style></head><body>"
        "<h1>Audit log integrity report</h1>"
        f'<p class="meta">Generated {_e(body["generated_at"])}, verified with the key'
        f" {_e(body.get('key_name'))}</p>"
        f"{_status(body)}{_facts(body, data)}{_figures(data, unavailable)}{_caveat(body)}"
        "</body></html>\n"
    )
    return page.encode("ascii", "xmlcharrefreplace").decode("ascii")
