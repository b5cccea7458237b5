"""The exact checks behind the detectors."""

from __future__ import annotations

import pytest

from tests.unit.privacy.samples import card, iban
from tokpulse.privacy import validators as v


@pytest.mark.parametrize(
    "digits",
    [
        "4111111111111111",
        "378282246310005",
        "6011111111111117",
        "5555555555554444",
        card("4", 16, 5),
        card("62", 19, 6),
    ],
)
def test_luhn_valid(digits):
    assert v.luhn_ok(digits)


@pytest.mark.parametrize("digits", ["4111111111111112", "378282246310006", "1234567812345678"])
def test_luhn_invalid(digits):
    assert not v.luhn_ok(digits)


@pytest.mark.parametrize(
    "digits,brand",
    [
        ("4111111111111111", "visa"),
        ("5555555555554444", "mastercard"),
        ("2221000000000009", "mastercard"),
        ("378282246310005", "amex"),
        ("6011111111111117", "discover"),
        ("3530111333300000", "jcb"),
        ("36259600000004", "diners"),
        ("6200000000000005", "unionpay"),
    ],
)
def test_card_brand(digits, brand):
    assert v.card_brand(digits) == brand


def test_card_brand_rejects_unissued_prefixes_and_lengths():
    assert v.card_brand("1716239022123") is None  # epoch milliseconds
    assert v.card_brand("9111111111111111") is None
    assert v.card_brand("411111111111111") is None  # 15-digit Visa
    assert v.card_brand("4111111111111") is None and v.card_brand("4111111111111", strict=True) == "visa"


def test_card_grouping():
    assert v.card_ok(b"4111 1111 1111 1111") and v.card_ok(b"3782 822463 10005")
    assert not v.card_ok(b"4111 1111-1111 1111")
    assert not v.card_ok(b"41 11 11 11 11 11 11 11")


def test_iban():
    assert v.iban_ok(b"DE89370400440532013000") and v.iban_ok(b"GB82 WEST 1234 5698 7654 32")
    assert not v.iban_ok(b"DE89370400440532013001")  # checksum
    assert not v.iban_ok(b"DE8937040044053201300")  # German IBANs have 22 characters
    assert not v.iban_ok(b"XX89370400440532013000")  # no such country
    made_up = iban("QQ", "12345678901234")
    assert not v.iban_ok(made_up.encode()) and v.iban_ok(made_up.encode(), strict=True)


@pytest.mark.parametrize(
    "ssn,ok",
    [
        ("123-45-6789", True),
        ("000-45-6789", False),
        ("666-45-6789", False),
        ("900-45-6789", False),
        ("123-00-6789", False),
        ("123-45-0000", False),
        ("899 99 9999", True),
    ],
)
def test_ssn_ranges(ssn, ok):
    assert v.ssn_ok(ssn.encode()) is ok


def test_phone_checks():
    assert v.phone_international_ok(b"+14155552671")
    assert not v.phone_international_ok(b"+3.14159265")  # a signed decimal
    assert not v.phone_international_ok(b"+1234567")  # too short
    assert not v.phone_international_ok(b"+1234567890123456")  # E.164 has at most 15 digits
    assert v.nanp_ok(b"(415) 555-2671") and v.nanp_ok(b"1-800-555-0199")
    assert (
        not v.nanp_ok(b"(115) 555-2671")
        and not v.nanp_ok(b"(411) 555-2671")
        and not v.nanp_ok(b"415-155-2671")
    )
    assert v.phone_national_eu_ok(b"020 7946 0958") and v.phone_national_eu_ok(b"030/1234567")
    assert not v.phone_national_eu_ok(b"05.01.2024 10")  # a date and an hour
    assert not v.phone_national_eu_ok(b"0207946095")  # one group: only with context or in strict mode


def test_placeholders():
    for p in (
        b"sk-xxxxxxxxxxxxxxxx",
        b"<YOUR_KEY>",
        b"${TOKEN}",
        b"$TOKEN",
        b"****",
        b"AKIAIOSFODNN7EXAMPLE",
        b"your-api-key-here",
        b"aaaaaaaaaaaaaaaaaaaa",
        b"[REDACTED]",
        b"{{ secrets.TOKEN }}",
    ):
        assert v.looks_placeholder(p), p
    for p in (b"iK2ZWeqhFWCEPyYngFb51yBMWXaSCrUZoL8g5ubb", b"hunter22", b"Tr0ub4dor&3"):
        assert not v.looks_placeholder(p), p


def test_assigned_secret_rules():
    assert v.assigned_secret_ok(b"password", b"hunter22", quoted=False)
    assert v.assigned_secret_ok(b"password", b"correcthorsebatterystaple", quoted=False)  # long enough
    assert not v.assigned_secret_ok(b"password", b"changed", quoted=False)  # a plain word
    assert not v.assigned_secret_ok(b"password", b"db_password", quoted=False)  # a variable
    assert not v.assigned_secret_ok(b"token", b"self.token", quoted=False)
    assert not v.assigned_secret_ok(b"token", b"abcdefgh", quoted=True)  # a token needs letters and digits
    assert v.assigned_secret_ok(b"api_token", b"a8f5f167f44f4964e6c998dee827110c", quoted=True)


def test_entropy_and_classes():
    assert v.shannon_entropy(b"aaaa") == 0
    assert v.shannon_entropy(b"abcd") == 2
    assert v.char_classes(b"abc") == 1 and v.char_classes(b"aB3") == 3 and v.char_classes(b"--") == 0


def test_jwt_and_basic():
    assert v.jwt_ok(b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig")
    assert not v.jwt_ok(b"eyJub3RoaW5nIjoxfQ.eyJzdWIiOiIxIn0.sig")  # no alg/typ in the header
    assert v.basic_auth_ok(b"YWxpY2U6czNjcmV0")  # alice:s3cret
    assert not v.basic_auth_ok(b"authentication")
