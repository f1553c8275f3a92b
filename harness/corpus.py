"""Labelled synthetic documents in the default taxonomy, as many as a test asks for: phrases of
each document type filled with random names, codes, dates and amounts (no real patient), so a
stage can be trained and gated on a few hundred of them. ``noise`` gives that share of them a
wrong label, as careless labelling would."""

from __future__ import annotations

import random
from dataclasses import dataclass

PHRASES = {
    "CLINICAL_NOTES": [
        "Progress note, day {n}. Patient {who} afebrile overnight, tolerating oral diet.",
        "History of present illness: {who} reports {symptom} for {n} days.",
        "Assessment and plan: {symptom}, likely viral; continue fluids, review in {n} days.",
        "Discharge summary for {who}: admitted with {symptom}, treated and discharged home.",
        "Physical examination: chest clear, heart sounds normal, abdomen soft and non-tender.",
    ],
    "BILLING": [
        "Statement of account for {who}. Office visit CPT {code}, ${amount}.00.",
        "Invoice {code}: balance due ${amount}.00 by {date}; insurance paid ${amount}.00.",
        "Claim submitted to the payer for services on {date}, total charges ${amount}.00.",
        "Payment received with thanks: ${amount}.00 applied to account {code}.",
        "Itemised bill: laboratory panel ${amount}.00, facility fee ${amount}.00.",
    ],
    "AUTHORIZATION": [
        "Prior authorization request: MRI of the lumbar spine for {who}, CPT {code}.",
        "The plan approves {n} sessions of physical therapy; reference {code}, valid to {date}.",
        "Pre-certification needed before the procedure on {date}; please send clinical notes.",
        "Authorization denied: the requested service is not medically necessary per policy.",
        "Referral approval for {who} to see a specialist, authorization number {code}.",
    ],
    "TEST_RESULTS": [
        "Laboratory report, collected {date}: hemoglobin {n}.{n} g/dL, reference 12 to 16.",
        "Radiology result: chest X-ray shows no acute cardiopulmonary abnormality.",
        "Glucose fasting {amount} mg/dL, creatinine 0.{n} mg/dL; validated by the laboratory.",
        "Pathology report: specimen {code} benign, margins clear.",
        "Culture result for {who}: no growth after {n} days.",
    ],
    "ADMINISTRATIVE": [
        "Appointment reminder for {who} on {date} at 10:30 in clinic {n}.",
        "Please update your address and phone number at the front desk.",
        "The clinic will be closed on {date} for staff training.",
        "Consent form and privacy notice enclosed; sign and return by {date}.",
        "Change of primary care provider confirmed for {who} from {date}.",
    ],
}
SYMPTOMS = ["cough", "fever", "headache", "chest pain", "abdominal pain", "fatigue", "dizziness"]


@dataclass(frozen=True)
class LabelledText:
    text: str
    label: str
    """The label given, which for a noisy share is not the text's type."""
    true_label: str


def labelled_texts(count: int, seed: int, noise: float = 0.0) -> list[LabelledText]:
    """``count`` documents, the labels in turn; two to four phrases each."""
    rng = random.Random(seed)  # noqa: S311 - made-up documents, not a secret
    labels = list(PHRASES)
    made = []
    for i in range(count):
        label = labels[i % len(labels)]
        phrases = rng.sample(PHRASES[label], rng.randint(2, 4))
        text = " ".join(phrase.format(**_fill(rng)) for phrase in phrases)
        given = rng.choice([x for x in labels if x != label]) if rng.random() < noise else label
        made.append(LabelledText(f"{text} Ref {rng.randrange(10**6):06d}.", given, label))
    return made


def _fill(rng: random.Random) -> dict[str, object]:
    return {
        "who": f"SYN-{rng.randrange(10000):04d}",
        "n": rng.randint(1, 9),
        "code": f"{rng.randrange(10**5):05d}",
        "amount": rng.randint(20, 900),
        "date": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "symptom": rng.choice(SYMPTOMS),
    }
