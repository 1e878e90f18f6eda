"""DQ011 personal_data: generated e-mails, SSNs, cards are found; numeric data raises no alarm."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bastion.data.checks.personal_data import PersonalData, PersonalDataConfig
from bastion.data.patterns import find_personal_data, iban_valid, luhn_valid, name_hint, redact
from bastion.findings import Status

FIRST = ["ana", "bob", "chen", "dana", "eli", "fatima", "goran", "hana"]
DOMAINS = ["example.org", "mail.test", "hospital.example"]


def _fake_emails(rng: np.random.Generator, n: int) -> list[str]:
    return [f"{rng.choice(FIRST)}.{rng.integers(1, 999)}@{rng.choice(DOMAINS)}" for _ in range(n)]


def _fake_ssns(rng: np.random.Generator, n: int) -> list[str]:
    return [
        f"{rng.integers(1, 666):03d}-{rng.integers(1, 100):02d}-{rng.integers(1, 10_000):04d}"
        for _ in range(n)
    ]


def _luhn_complete(prefix: str) -> str:
    for d in "0123456789":
        if luhn_valid(prefix + d):
            return prefix + d
    raise AssertionError("unreachable: one check digit always fits")


def _fake_cards(rng: np.random.Generator, n: int) -> list[str]:
    out = []
    for _ in range(n):
        body = "4" + "".join(str(d) for d in rng.integers(0, 10, size=14))
        card = _luhn_complete(body)
        out.append(" ".join(card[i : i + 4] for i in range(0, 16, 4)))
    return out


@pytest.fixture
def people() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 300
    return pd.DataFrame(
        {
            "contact": _fake_emails(rng, n),
            "ident": _fake_ssns(rng, n),
            "payment": _fake_cards(rng, n),
            "notes": [f"visit {i}" for i in range(n)],
            "age": rng.integers(20, 90, size=n),
        }
    )


def test_generated_personal_data_is_found(make_ctx, people: pd.DataFrame) -> None:
    finding = PersonalData().run(make_ctx(people, profile=False))
    assert finding.status is Status.FAIL
    columns = finding.evidence["columns"]
    assert columns["contact"]["kinds"] == ["email"]
    assert columns["ident"]["kinds"] == ["us_ssn"]
    assert columns["payment"]["kinds"] == ["credit_card"]
    assert "notes" not in columns
    assert finding.metrics["pii_columns"] == 3
    assert finding.metrics["max_match_fraction"] == 1.0


def test_raw_values_never_leave_the_samples_and_samples_are_redacted(
    make_ctx, people: pd.DataFrame
) -> None:
    finding = PersonalData().run(make_ctx(people, profile=False))
    outside = json.dumps({k: v for k, v in finding.evidence.items() if k != "samples"})
    samples = json.dumps(finding.evidence["samples"])
    for value in [*people["contact"], *people["ident"], *people["payment"]]:
        assert value not in outside
        assert value not in samples
        assert value not in finding.message
    assert all(s.startswith("***-**-") for s in finding.evidence["samples"]["ident"])


def test_no_false_alarm_on_breast_cancer(make_ctx, cancer: pd.DataFrame) -> None:
    finding = PersonalData().run(make_ctx(cancer, target="target", profile=False))
    assert finding.status is Status.PASS
    # the same numbers as text go through every pattern and still match nothing
    as_text = cancer.astype(str)
    finding = PersonalData().run(make_ctx(as_text, profile=False))
    assert finding.status is Status.PASS
    assert finding.metrics["text_columns"] == cancer.shape[1]
    assert finding.metrics["values_scanned"] == cancer.size
    assert finding.metrics["max_match_fraction"] == 0.0


def test_column_names_alone_warn(make_ctx) -> None:
    frame = pd.DataFrame({"PatientEmail": [1.0, 2.0], "cell_size": [1, 2], "product_name": [1, 2]})
    finding = PersonalData().run(make_ctx(frame, profile=False))
    assert finding.status is Status.WARN
    assert finding.evidence["name_hints"] == {"PatientEmail": "email"}


def test_allow_columns_and_min_fraction(make_ctx, people: pd.DataFrame) -> None:
    config = PersonalDataConfig(allow_columns=["contact", "ident", "payment"])
    assert PersonalData(config).run(make_ctx(people, profile=False)).status is Status.PASS
    mixed = people[["notes"]].copy()
    mixed.loc[:14, "notes"] = "write to ana.1@example.org"  # 15 of 300 = 5%
    assert PersonalData().run(make_ctx(mixed, profile=False)).status is Status.PASS
    strict = PersonalData(PersonalDataConfig(min_match_fraction=0.05))
    assert strict.run(make_ctx(mixed, profile=False)).status is Status.FAIL


def test_sampling_is_seeded(make_ctx, people: pd.DataFrame) -> None:
    config = PersonalDataConfig(max_values=50)
    a = PersonalData(config).run(make_ctx(people, profile=False, seed=3))
    b = PersonalData(config).run(make_ctx(people, profile=False, seed=3))
    assert a.evidence == b.evidence
    assert a.evidence["columns"]["contact"]["values_scanned"] == 50


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("jane.doe@example.org", "email"),
        ("123-45-6789", "us_ssn"),
        ("4111 1111 1111 1111", "credit_card"),
        ("DE89 3704 0044 0532 0130 00", "iban"),
        ("GB82WEST12345698765432", "iban"),
        ("(555) 123-4567", "phone"),
        ("+44 20 7946 0958", "phone"),
    ],
)
def test_patterns_find(text: str, kind: str) -> None:
    assert kind in {m.kind for m in find_personal_data(text)}


@pytest.mark.parametrize(
    "text",
    [
        "17.99",
        "2021-03-04",
        "000-12-3456",
        "4111111111111112",
        "DE00 3704 0044 0532 0130 00",
        "192.168.1.1",
        "0.07871",
    ],
)
def test_patterns_reject(text: str) -> None:
    assert find_personal_data(text) == []


def test_checksums_and_redaction() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert iban_valid("GB82 WEST 1234 5698 7654 32")
    assert not iban_valid("GB82 WEST 1234")
    assert redact("email", "jane.doe@example.org") == "j***@***.org"
    assert redact("credit_card", "4111 1111 1111 1111") == "**** **** **** 1111"
    assert name_hint("date_of_birth") == "birth_date"
    assert name_hint("mean radius") is None
