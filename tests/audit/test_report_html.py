"""``audit-tool report --html`` as a compliance officer sees it: the page rendered by headless
Chromium (Debian's, installed by scripts/test.sh from scripts/system-packages.txt), read back as
its DOM and as a screenshot."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from PIL import Image

from audit import cli, store
from audit.chain import format_time
from audit.report_html import render_html
from audit.sealer import Sealer
from audit.sealer_state import SealerState
from audit.signer import Signer
from audit.types import Event
from harness.postgres import Logins
from tests.audit.conftest import ORIGIN, make_event

HOSTILE = "<script>alert(1)</script> $\\frac$"
"""Markup, and mathtext that matplotlib would fail to parse if it parsed labels."""
INTRUDER = "CN=J\u00fcrgen K\u00f6hler,OU=front-desk"
"""Not ASCII: the page is ASCII with character references, whatever the output encoding."""
OK_GREEN, TAMPERED_RED = (0x1E, 0x7B, 0x34), (0xB0, 0x00, 0x20)
"""The status banner's background colours (audit/report_html.py: CSS)."""


# --- the log --------------------------------------------------------------------------------


@dataclass
class Log:
    """A sealed log over three UTC days, as a superuser URL and a read-only auditor's URL."""

    admin_url: str
    auditor_url: str
    events: list[Event] = field(default_factory=list)
    checkpoints: int = 0


ALLOWED = "spiffe://hospital/svc/records"
DAYS = (
    [("classify_document", 200, ALLOWED)] * 5
    + [("classify_document", 403, INTRUDER)] * 2
    + [("classify_document", 401, None)],
    [("classify_document", 200, ALLOWED)] * 4
    + [("review_classification", 201, ALLOWED)]
    + [("read_classification", 403, HOSTILE)] * 3,
    [("classify_document", 200, ALLOWED)] * 3
    + [("classify_document", 401, None)]
    + [("read_classification", 403, INTRUDER)],
)
"""Per day: allowed classifications and a review, and denials: an intruder's 403s, requests
without an identity (401), and 403s of an actor whose certificate name is markup."""


def _day_events(
    day: datetime, planned: list[tuple[str, int, str | None]], start: int
) -> list[Event]:
    return [
        make_event(
            start + n,
            occurred_at=format_time(day + timedelta(minutes=7 * n)),
            action=action,
            outcome_status=status,
            actor_subject=actor,
        )
        for n, (action, status, actor) in enumerate(planned)
    ]


def _append(url: str, events: list[Event]) -> None:
    with psycopg.connect(url) as conn:
        for event in events:
            store.append_pending(conn, event)


@pytest.fixture
def log(audit_db: str, sealer_url: str, signer: Signer, state: SealerState, logins: Logins) -> Log:
    """Three days of events sealed day by day (one checkpoint each), two more left pending."""
    made = Log(audit_db, logins.url(audit_db, logins.auditor))
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    for days_ago, planned in zip((2, 1, 0), DAYS, strict=True):
        events = _day_events(noon - timedelta(days=days_ago), planned, len(made.events))
        _append(audit_db, events)
        sealer = Sealer(sealer_url, signer, state)
        assert sealer.run_once() == len(events)
        sealer.close()
        made.events += events
        made.checkpoints += 1
    _append(audit_db, [make_event(n, action="read_classification") for n in (900, 901)])
    return made


def _tamper(url: str, seq: int) -> None:
    """Rewrite one sealed entry's outcome with triggers off, as a superuser can."""
    with psycopg.connect(url) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            "UPDATE audit_entries SET entry = convert_to(replace(convert_from(entry, 'UTF8'),"
            " '\"outcome_status\":200', '\"outcome_status\":204'), 'UTF8') WHERE seq = %s",
            [seq],
        )


def _report(url: str, vkey: Path, out: Path, *more: str) -> int:
    """``audit-tool report --html`` through ``main``, so the exit code is the real one."""
    args = ["report", "--database-url", url, "--public-key", str(vkey), "--output", str(out)]
    with CliRunner().isolation():
        try:
            cli.main([*args, "--html", *more])
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 2
    return 0


# --- the browser ----------------------------------------------------------------------------


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(
            "Debian's chromium is not installed: scripts/test.sh installs it (listed in"
            " scripts/system-packages.txt), or run apt-get install --no-install-recommends chromium"
        )
    return found


def _browse(page: Path, tmp_path: Path, *args: str) -> str:
    """Run headless Chromium on the page with a new empty profile and no background traffic."""
    profile = tmp_path / f"chromium-{uuid.uuid4().hex[:8]}"
    profile.mkdir()
    command = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", *args, page.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


VOID = {"meta", "br", "hr", "img", "input", "link", "source", "wbr", "col", "area", "base"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def walk(self) -> list[Node]:
        return [self, *(n for child in self.children for n in child.walk())]

    def find(self, element_id: str) -> Node:
        found = [n for n in self.walk() if n.attrs.get("id") == element_id]
        assert len(found) == 1, f"want one element #{element_id}, got {len(found)}"
        return found[0]

    def all(self, tag: str) -> list[Node]:
        return [n for n in self.walk() if n.tag == tag]

    def content(self) -> str:
        return "".join(self.text) + "".join(child.content() for child in self.children)


class _Tree(HTMLParser):
    """The rendered DOM (Chromium serialises it as HTML) as a tree of ``Node``s."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        while self.stack[-1].tag != tag:
            self.stack.pop()
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].text.append(data)


def _dom(page: Path, tmp_path: Path) -> Node:
    tree = _Tree()
    tree.feed(_browse(page, tmp_path, "--dump-dom"))
    tree.close()
    assert any(n.tag == "body" for n in tree.root.walk()), "Chromium dumped no page"
    return tree.root


def _screenshot(page: Path, tmp_path: Path) -> Image.Image:
    png = tmp_path / f"{page.stem}.png"
    _browse(page, tmp_path, f"--screenshot={png}", "--window-size=1280,2000")
    return Image.open(png).convert("RGB")


def _share(image: Image.Image, colour: tuple[int, int, int]) -> float:
    """Fraction of the top of the screenshot (where the verdict is) painted in ``colour``."""
    top = image.crop((0, 0, image.width, 400))
    pixels = top.width * top.height
    counts = {rgb: n for n, rgb in top.getcolors(maxcolors=pixels) or []}
    return counts.get(colour, 0) / pixels


def _rows(dom: Node, table_id: str) -> list[list[str]]:
    body = dom.find(table_id).all("tbody")[0]
    return [[cell.content() for cell in row.all("td")] for row in body.all("tr")]


def _facts(dom: Node) -> dict[str, str]:
    rows = dom.find("facts").all("tr")
    return {row.all("th")[0].content(): row.all("td")[0].content() for row in rows}


def _marks(dom: Node, figure_id: str, prefix: str) -> list[Node]:
    """The plot's drawn marks (bars) that the renderer names ``prefix...``."""
    return [n for n in dom.find(figure_id).walk() if n.attrs.get("id", "").startswith(prefix)]


# --- tests ----------------------------------------------------------------------------------


@pytest.fixture
def page(log: Log, key_files: Path, tmp_path: Path) -> Node:
    """The report of the untouched log, made with the read-only auditor role, as rendered."""
    html = tmp_path / "report.html"
    assert _report(log.auditor_url, key_files / "verifier.vkey", html, "--origin", ORIGIN) == 0
    return _dom(html, tmp_path)


def test_status_and_facts_are_shown(page: Node, log: Log) -> None:
    status = page.find("status")
    assert status.attrs["class"] == "status status-ok"
    assert status.content().startswith("OK")
    facts = _facts(page)
    sealed = len(log.events)
    assert facts["Entries verified"] == f"{sealed} (seq 0..{sealed - 1})"
    assert facts["Checkpoints verified"] == str(log.checkpoints)
    assert facts["Newest checkpoint"].startswith(f"size {sealed}, created 20")
    assert facts["Events awaiting sealing"] == "2"
    assert facts["Entries after the newest checkpoint"] == "0"
    assert facts["Verifier key"] == facts["Origin"] == ORIGIN


def test_without_origin_the_signed_one_is_shown(log: Log, key_files: Path, tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    assert _report(log.auditor_url, key_files / "verifier.vkey", html) == 0
    tree = _Tree()
    tree.feed(html.read_text(encoding="ascii"))
    assert _facts(tree.root)["Origin"] == f"{ORIGIN} (as signed; not checked: no --origin)"


def test_checkpoints_are_plotted_over_time(page: Node, log: Log) -> None:
    line = page.find("checkpoints-line")  # one marker per checkpoint on the step line
    assert len(line.all("use")) == log.checkpoints
    assert line.all("path")[0].attrs["d"]


def test_events_per_day_are_plotted_and_tabled(page: Node, log: Log) -> None:
    cells = Counter((e.occurred_at[:10], e.action, e.outcome_status) for e in log.events)
    bars = _marks(page, "daily-plot", "daily-bar-")  # one segment per day and pair
    assert len(bars) == len(cells)
    assert all(bar.all("path")[0].attrs["d"] for bar in bars)
    heads = page.find("daily-table").all("th")
    pairs = [(th.attrs["data-action"], int(th.attrs["data-status"])) for th in heads[1:-1]]
    assert pairs == sorted({(action, status) for _, action, status in cells})
    per_day = Counter(e.occurred_at[:10] for e in log.events)
    assert len(per_day) == 3
    assert _rows(page, "daily-table") == [
        [day, *(str(cells[(day, *pair)] or "") for pair in pairs), str(total)]
        for day, total in sorted(per_day.items())
    ]


def test_denials_are_plotted_and_tabled_by_actor(page: Node) -> None:
    denials = {row[0]: [int(n) for n in row[3:]] for row in _rows(page, "denials-table")}
    assert denials == {INTRUDER: [0, 3, 3], HOSTILE: [0, 3, 3], "(no identity)": [2, 0, 2]}
    assert len(_marks(page, "denials-plot", "denials-bar-")) == 3  # one 401 bar, two 403s
    labels = [t.content() for t in page.find("denials-plot").all("text")]
    assert INTRUDER in labels and "(no identity)" in labels


def test_hostile_actor_name_is_text_not_markup(log: Log, key_files: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    assert _report(log.admin_url, key_files / "verifier.vkey", page) == 0
    raw = page.read_text(encoding="ascii")
    assert HOSTILE not in raw and "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    dom = _dom(page, tmp_path)
    assert dom.all("script") == []
    assert HOSTILE in dom.find("denials-table").content()
    plot_text = " ".join(t.content() for t in dom.find("denials-plot").all("text"))
    assert HOSTILE in plot_text


def test_page_is_self_contained(log: Log, key_files: Path, tmp_path: Path) -> None:
    """Nothing to fetch: no script, stylesheet link, image source or external reference."""
    page = tmp_path / "report.html"
    assert _report(log.admin_url, key_files / "verifier.vkey", page) == 0
    dom = _dom(page, tmp_path)
    nodes = dom.walk()
    assert not [n.tag for n in nodes if n.tag in {"script", "link", "img", "iframe", "object"}]
    refs = [v for n in nodes for k, v in n.attrs.items() if k in {"href", "xlink:href", "src"}]
    assert refs and all(ref.startswith("#") for ref in refs)  # the SVGs' own markers
    ids = [n.attrs["id"] for n in nodes if "id" in n.attrs]
    assert len(ids) == len(set(ids)), "three SVGs in one page must not share ids"
    assert all(ref[1:] in ids for ref in refs)
    raw = page.read_text(encoding="ascii")
    assert "url(" not in raw.replace("url(#", "") and "@import" not in raw
    namespaces = re.findall(r'\s([\w:]+)="https?://', raw)  # names, never fetched
    assert raw.count("http") == len(namespaces) and set(namespaces) <= {"xmlns", "xmlns:xlink"}
    assert len(dom.all("svg")) == 3


def test_screenshot_shows_the_verdict_in_colour(log: Log, key_files: Path, tmp_path: Path) -> None:
    page = tmp_path / "ok.html"
    assert _report(log.admin_url, key_files / "verifier.vkey", page) == 0
    image = _screenshot(page, tmp_path)
    assert image.size == (1280, 2000)
    assert _share(image, OK_GREEN) > 0.02
    assert _share(image, TAMPERED_RED) == 0


def test_tampering_is_shown_with_its_kind_and_exits_1(
    log: Log, key_files: Path, tmp_path: Path
) -> None:
    _tamper(log.admin_url, 3)
    page = tmp_path / "tampered.html"
    assert _report(log.auditor_url, key_files / "verifier.vkey", page) == 1
    dom = _dom(page, tmp_path)
    status = dom.find("status")
    assert status.attrs["class"] == "status status-tampered"
    text = status.content()
    assert text.startswith("TAMPERED") and "modified at seq 3" in text
    facts = _facts(dom)
    assert facts["Entries verified"] == "not verified"
    assert facts["Newest checkpoint"].endswith("(stored, not verified)")
    assert facts["Events awaiting sealing"] == "2"
    assert dom.find("daily-plot").all("svg")  # the figures are still there to look into
    image = _screenshot(page, tmp_path)
    assert _share(image, TAMPERED_RED) > 0.02 and _share(image, OK_GREEN) == 0


def test_html_and_json_are_mutually_exclusive(key_files: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    url = "postgresql://nobody@127.0.0.1:1/none"  # refused before any connection
    assert _report(url, key_files / "verifier.vkey", page, "--json") == 2
    assert not page.exists() or page.read_text() == ""


def test_page_without_figures_still_gives_the_verdict() -> None:
    """When the aggregates cannot be read, the page says why instead of failing."""
    body = {"status": "error", "generated_at": "2026-01-01T00:00:00+00:00", "error": "<boom>"}
    page = render_html(body, None, "permission denied for <table>")
    assert "ERROR" in page and "&lt;boom&gt;" in page and "<boom>" not in page
    assert "permission denied for &lt;table&gt;" in page


def test_cross_check_findings_are_listed_escaped() -> None:
    """Disagreements a cross-check names (records against the log) are each listed."""
    finding = {"kind": "result_modified", "seq": 4, "id": "r1", "detail": "label <b> differs"}
    tampering = {"kind": "result_modified", "seq": 4, "detail": "x", "findings": [finding]}
    body = {"status": "tampered", "generated_at": "2026-01-01T00:00:00+00:00"}
    page = render_html({**body, "tampering": tampering}, None, "not read")
    assert '<ul id="findings"><li>result modified: label &lt;b&gt; differs</li></ul>' in page


def test_json_report_still_works(log: Log, key_files: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    args = ["report", "--database-url", log.admin_url, "--public-key"]
    with CliRunner().isolation(), pytest.raises(SystemExit) as done:
        cli.main([*args, str(key_files / "verifier.vkey"), "--json", "--output", str(out)])
    assert done.value.code == 0
    assert json.loads(out.read_text())["entries"] == len(log.events)
