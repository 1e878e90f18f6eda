"""Patterns that recognise personal data in values and in column names, with redaction.

Each value pattern pairs a regular expression with an optional validator that removes most
false positives: the Luhn checksum for payment-card numbers, the ISO 13616 mod-97 checksum
for IBANs, the digit count of international phone numbers. Column-name hints match whole
tokens of a normalised name (``patientEmail`` -> ``patient_email``), so that ``cell_size``
is not a phone column and ``mean radius`` is not a name.

Example::

    >>> [m.kind for m in find_personal_data("mail me at jane.doe@example.org")]
    ['email']
    >>> redact("email", "jane.doe@example.org")
    'j***@***.org'
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "NAME_HINTS",
    "VALUE_PATTERNS",
    "PersonalDataMatch",
    "ValuePattern",
    "find_personal_data",
    "iban_valid",
    "luhn_valid",
    "name_hint",
    "redact",
]


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn (mod 10) checksum."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """True when ``text`` (spaces allowed) passes the ISO 13616 mod-97 check."""
    compact = text.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _card_valid(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    # issuer identification numbers start with 2-6 (Mastercard 2-series to Discover 6)
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits)


def _phone_valid(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return 8 <= len(digits) <= 15  # ITU-T E.164 allows at most 15 digits


@dataclass(frozen=True)
class ValuePattern:
    """A kind of personal data recognised in values: a regex plus an optional validator."""

    kind: str
    regex: re.Pattern[str]
    validate: Callable[[str], bool] | None = None


@dataclass(frozen=True)
class PersonalDataMatch:
    """One match of a value pattern: its kind and the matched text."""

    kind: str
    text: str


VALUE_PATTERNS: tuple[ValuePattern, ...] = (
    ValuePattern(
        "email",
        re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    ),
    # US social security number, dashed; area 000, 666 and 9xx, group 00, serial 0000 are never
    # issued (SSA), which keeps dates and codes out
    ValuePattern(
        "us_ssn",
        re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])"),
    ),
    ValuePattern(
        "credit_card",
        re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"),
        _card_valid,
    ),
    ValuePattern(
        "iban",
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
        iban_valid,
    ),
    # North American numbers with separators, and international numbers written with "+"
    ValuePattern(
        "phone",
        re.compile(
            r"(?<![\w+])(?:\+1[ .-]?)?\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?!\d)"
            r"|(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?!\d)"
        ),
        _phone_valid,
    ),
)


# (kind, regex over the normalised column name: lower-case tokens joined by "_"). Most match
# whole tokens anywhere in the name; a bare "name" only matches the whole name, because
# "product_name" or "model_name" say nothing about people.
def _tokens(body: str) -> re.Pattern[str]:
    return re.compile(rf"(?:^|_)(?:{body})(?:_|$)")


NAME_HINTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("email", _tokens(r"e_?mail|email_address|mail_address")),
    ("phone", _tokens(r"phone|telephone|tel|mobile|cell_?phone|fax")),
    ("us_ssn", _tokens(r"ssn|social_security")),
    ("national_id", _tokens(r"national_id|passport|tax_id|driver_?licen[cs]e")),
    ("iban", _tokens(r"iban|bank_account|account_number")),
    ("credit_card", _tokens(r"credit_card|card_number|cc_number|ccn")),
    (
        "name",
        re.compile(
            r"^name$|(?:^|_)(?:first_name|last_name|full_name|surname|given_name|family_name"
            r"|patient_name|customer_name|maiden_name)(?:_|$)"
        ),
    ),
    ("address", _tokens(r"address|street|zip|zip_code|zipcode|postcode|postal_code")),
    ("birth_date", _tokens(r"dob|date_of_birth|birth_date|birthdate|birthday")),
    ("ip_address", _tokens(r"ip|ip_address|ipv4|ipv6")),
)


def _normalise_name(name: str) -> str:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return "_".join(t for t in re.split(r"[^0-9a-zA-Z]+", spaced.lower()) if t)


def name_hint(column: str) -> str | None:
    """The kind of personal data a column's name suggests, or None.

    Example::

        >>> name_hint("PatientEmail"), name_hint("cell_size")
        ('email', None)
    """
    normalised = _normalise_name(column)
    for kind, regex in NAME_HINTS:
        if regex.search(normalised):
            return kind
    return None


def find_personal_data(value: str) -> list[PersonalDataMatch]:
    """Every validated match of a value pattern in ``value``."""
    found: list[PersonalDataMatch] = []
    for pattern in VALUE_PATTERNS:
        for m in pattern.regex.finditer(value):
            text = m.group(0)
            if pattern.validate is None or pattern.validate(text):
                found.append(PersonalDataMatch(pattern.kind, text))
    return found


def redact(kind: str, text: str) -> str:
    """A redacted form of a match that shows its shape but not the person.

    E-mails keep the first letter and the top-level domain; everything else keeps only its
    last four letters or digits (the convention of card receipts).
    """
    if kind == "email":
        local, _, domain = text.partition("@")
        tld = domain.rsplit(".", 1)[-1]
        return f"{local[:1]}***@***.{tld}"
    alnum_positions = [i for i, ch in enumerate(text) if ch.isalnum()]
    keep = set(alnum_positions[-4:])
    return "".join(ch if (i in keep or not ch.isalnum()) else "*" for i, ch in enumerate(text))
