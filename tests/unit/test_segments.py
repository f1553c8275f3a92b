"""Splitting a packet: page labels and "page k of n" cues into consecutive segments."""

from __future__ import annotations

import pytest

from appliance.classification.segments import PageLabel, page_cue, segments

A = {"A": 0.9, "B": 0.1}
B = {"A": 0.2, "B": 0.8}


def ranges(pages: list[PageLabel], split: bool = True) -> list[tuple[int, int, str]]:
    return [(s.first_page, s.last_page, s.label) for s in segments(pages, split=split)]


def test_adjacent_pages_with_one_label_are_one_segment() -> None:
    pages = [PageLabel(1, A), PageLabel(2, A), PageLabel(3, B)]
    assert ranges(pages) == [(1, 2, "A"), (3, 3, "B")]
    assert ranges(pages, split=False) == [(1, 1, "A"), (2, 2, "A"), (3, 3, "B")]


def test_page_one_of_n_starts_a_document_even_with_the_same_label() -> None:
    pages = [PageLabel(1, A, "Invoice 1"), PageLabel(2, A, "Invoice 2 Page 1 of 1")]
    assert ranges(pages) == [(1, 1, "A"), (2, 2, "A")]


def test_page_k_of_n_continues_a_document_whatever_its_label() -> None:
    pages = [PageLabel(1, A, "Page 1 of 2"), PageLabel(2, B, "Page 2/2 figures only")]
    [segment] = segments(pages, split=True)
    assert (segment.first_page, segment.last_page) == (1, 2)
    assert segment.scores == {"A": 0.55, "B": 0.45} and segment.label == "A"


def test_blank_pages_join_the_segment_before_them_or_at_the_start_the_next() -> None:
    pages = [PageLabel(1, None), PageLabel(2, A), PageLabel(3, None), PageLabel(4, B)]
    assert ranges(pages) == [(1, 3, "A"), (4, 4, "B")]
    assert ranges(pages, split=False) == [(1, 3, "A"), (4, 4, "B")]


@pytest.mark.parametrize(
    ("text", "cue"),
    [("Page 3 of 7", 3), ("page 1/2", 1), ("PAGE 12 OF 40 continued", 12), ("no cue", None),
     ("homepage 2 of 3", None)],
)  # fmt: skip
def test_page_cues(text: str, cue: int | None) -> None:
    assert page_cue(text) == cue
