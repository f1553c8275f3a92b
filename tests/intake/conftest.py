"""Fixtures for reading files: a page reader with the default limits and real Tesseract."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from appliance.intake.extract import PageReader
from appliance.intake.limits import Limits
from appliance.intake.ocr import TesseractOcr
from appliance.settings import Settings


def limits(**overrides: int) -> Limits:
    defaults = Limits.from_settings(Settings())
    return Limits(**{**defaults.__dict__, **overrides})


@pytest.fixture(scope="session")
def ocr() -> TesseractOcr:
    return TesseractOcr("eng", timeout_s=60)


@pytest.fixture
def reader(ocr: TesseractOcr) -> Iterator[PageReader]:
    made = PageReader(limits(), ocr, workers=2)
    yield made
    made.close()
