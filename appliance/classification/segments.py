"""From page labels to segments: consecutive page ranges that are one document each.

How a packet is split (``split`` mode):

1. Each page with text has the model's scores. A page with no text (a blank back side, an
   empty fax page) joins the segment before it, or the one after it at the start of a file.
2. Adjacent pages with the same label are one segment, unless a page says it starts a document
   ("Page 1 of 3", "Page 1/3"): then it starts a new segment even with the same label (two
   invoices back to back).
3. A page that says it continues one ("Page 2 of 3") stays in the segment before it even when
   the model labelled it otherwise: a lab report's second page of plain numbers is not a new
   document.
4. A segment's scores are the mean of its pages' scores; its label is the best of them.

Limits: the cues are the page's own "page k of n" text (English); two documents of the same
label without such a cue merge into one segment; a document whose pages are out of order is
several segments. ``pages`` mode keeps every page with text as its own segment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_PAGE_OF = re.compile(r"\bpage\s+(\d{1,4})\s*(?:of|/)\s*(\d{1,4})\b", re.IGNORECASE)


@dataclass(frozen=True)
class PageLabel:
    number: int
    scores: Mapping[str, float] | None
    """The model's scores; None for a page with no text."""
    text: str = ""


@dataclass(frozen=True)
class Segment:
    first_page: int
    last_page: int
    label: str
    confidence: float
    scores: dict[str, float]


def page_cue(text: str) -> int | None:
    """The k of the first "page k of n" on the page, if any."""
    match = _PAGE_OF.search(text)
    return int(match.group(1)) if match else None


def segments(pages: Sequence[PageLabel], *, split: bool) -> list[Segment]:
    """Consecutive segments covering every page (see the module doc); one per page with text
    when not ``split``. At least one page must have scores."""
    groups: list[list[PageLabel]] = []
    for page in pages:
        if groups and (page.scores is None or _continues(groups[-1], page, split)):
            groups[-1].append(page)
        else:
            groups.append([page])
    return [_segment(group) for group in groups]


def _continues(group: list[PageLabel], page: PageLabel, split: bool) -> bool:
    """Whether ``page`` (which has text) belongs to the segment ``group``."""
    labelled = [p for p in group if p.scores is not None]
    if not labelled:  # only blank pages so far: they go with the first page with text
        return True
    if not split:
        return False
    cue = page_cue(page.text)
    if cue is not None:
        return cue > 1
    assert page.scores is not None
    return _best(page.scores) == _best(_mean(labelled))


def _mean(pages: Sequence[PageLabel]) -> dict[str, float]:
    scored = [p.scores for p in pages if p.scores is not None]
    labels = scored[0].keys()
    return {label: sum(s[label] for s in scored) / len(scored) for label in labels}


def _best(scores: Mapping[str, float]) -> str:
    return max(scores, key=lambda label: scores[label])


def _segment(group: list[PageLabel]) -> Segment:
    scores = _mean(group)
    label = _best(scores)
    return Segment(group[0].number, group[-1].number, label, scores[label], scores)


def overall(pages: Sequence[PageLabel]) -> tuple[str, float, dict[str, float]]:
    """The file as a whole: the mean of its labelled pages' scores, and its best label."""
    scores = _mean(pages)
    label = _best(scores)
    return label, scores[label], scores
