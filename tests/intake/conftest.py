"""Fixtures for reading files: a page reader with the default limits and real Tesseract."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from appliance.intake.extract import PageReader
from appliance.intake.limits import Limits
from appliance.intake.ocr import TesseractOcr
from appliance.settings import Settings

# Three documents of a referral packet, as a clinic would send them.
LETTER = [
    "Dear Dr. Smith, thank you for referring Mrs. Jane Roe to our cardiology clinic.",
    "She was seen on March 3 for follow-up of hypertension and type 2 diabetes.",
    "Blood pressure was 128/82 and her medication was continued unchanged.",
    "We will see her again in three months. Kind regards, Dr. Adams",
]
LAB_REPORT = [
    "LABORATORY REPORT  Specimen: whole blood  Collected: 2026-03-03 08:15",
    "Hemoglobin A1c 7.2 percent  reference 4.0 to 5.6",
    "Glucose fasting 142 mg/dL  reference 70 to 99",
    "Creatinine 0.9 mg/dL  reference 0.6 to 1.1  Validated by the laboratory",
]
INVOICE = [
    "INVOICE 2026-0413  Statement of account",
    "Office visit, established patient, level 3   amount 120.00",
    "Electrocardiogram with interpretation   amount 45.00",
    "Balance due 165.00  Please pay within 30 days of the invoice date",
]


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
