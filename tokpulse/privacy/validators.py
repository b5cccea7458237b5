"""Exact checks applied to the candidates the fast scanner finds.

The scanner (Hyperscan) only says *where* something may be; these functions decide whether it
really is a card number, an IBAN, an SSN, a phone number or a live-looking secret. They work on
`bytes` (the guard scans UTF-8) and are pure, so they are easy to test one by one."""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter

# ---------------------------------------------------------------------------------------------
# Payment cards

_LUHN_DOUBLE = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_ok(digits: bytes | str) -> bool:
    """True when the digit string passes the Luhn (mod-10) check."""
    total = 0
    for i, ch in enumerate(reversed(digits if isinstance(digits, str) else digits.decode("ascii"))):
        d = ord(ch) - 48
        total += _LUHN_DOUBLE[d] if i & 1 else d
    return total % 10 == 0


def card_brand(digits: str, strict: bool = False) -> str | None:
    """The issuer family for a digit string, or None when no brand issues that prefix and length.

    A brand check on top of Luhn keeps epoch milliseconds, byte counters and other 13–19 digit
    metric values (which start with 1 or fail the length rules) from reading as cards."""
    n = len(digits)
    p2 = int(digits[:2])
    p3 = int(digits[:3])
    p4 = int(digits[:4])
    p6 = int(digits[:6])
    if digits[0] == "4":
        return "visa" if n in (16, 19) or (strict and n == 13) else None
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return "mastercard" if n == 16 else None
    if p2 in (34, 37):
        return "amex" if n == 15 else None
    if p4 == 6011 or 644 <= p3 <= 649 or p2 == 65 or 622126 <= p6 <= 622925:
        return "discover" if 16 <= n <= 19 else None
    if 3528 <= p4 <= 3589:
        return "jcb" if 16 <= n <= 19 else None
    if 300 <= p3 <= 305 or p4 == 3095 or p2 in (36, 38, 39):
        return "diners" if 14 <= n <= 19 else None
    if p2 == 62:
        return "unionpay" if 16 <= n <= 19 else None
    if 2200 <= p4 <= 2204:
        return "mir" if 16 <= n <= 19 else None
    if p4 in (5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763):
        return "maestro" if 13 <= n <= 19 else None
    return None


_CARD_GROUPS = {
    (4, 4, 4, 4),
    (4, 6, 5),
    (4, 6, 4),
    (4, 4, 4, 4, 3),
    (4, 4, 4, 3),
    (4, 4, 4, 4, 1),
    (4, 4, 4, 2),
    (4, 4, 5),
    (4, 5, 5),
    (5, 5, 5, 4),
    (6, 13),
    (4, 4, 4, 4, 2),
}


_SEPS = b" -"


def card_ok(candidate: bytes, strict: bool = False) -> bool:
    """Digits (optionally grouped by one kind of separator) that form a valid card number."""
    digits = candidate.translate(None, _SEPS)
    if not 13 <= len(digits) <= 19:
        return False
    sd = digits.decode("ascii")
    if card_brand(sd, strict) is None or not luhn_ok(sd):
        return False
    if len(digits) != len(candidate):
        has_space, has_dash = b" " in candidate, b"-" in candidate
        if has_space and has_dash:
            return False
        groups = tuple(len(g) for g in candidate.split(b" " if has_space else b"-"))
        if groups not in _CARD_GROUPS:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# IBAN (ISO 13616): length per country, then mod-97 == 1.

IBAN_LENGTHS: dict[str, int] = {
    "AD": 24,
    "AE": 23,
    "AL": 28,
    "AT": 20,
    "AZ": 28,
    "BA": 20,
    "BE": 16,
    "BG": 22,
    "BH": 22,
    "BI": 27,
    "BR": 29,
    "BY": 28,
    "CH": 21,
    "CR": 22,
    "CY": 28,
    "CZ": 24,
    "DE": 22,
    "DJ": 27,
    "DK": 18,
    "DO": 28,
    "EE": 20,
    "EG": 29,
    "ES": 24,
    "FI": 18,
    "FK": 18,
    "FO": 18,
    "FR": 27,
    "GB": 22,
    "GE": 22,
    "GI": 23,
    "GL": 18,
    "GR": 27,
    "GT": 28,
    "HN": 28,
    "HR": 21,
    "HU": 28,
    "IE": 22,
    "IL": 23,
    "IQ": 23,
    "IS": 26,
    "IT": 27,
    "JO": 30,
    "KW": 30,
    "KZ": 20,
    "LB": 28,
    "LC": 32,
    "LI": 21,
    "LT": 20,
    "LU": 20,
    "LV": 21,
    "LY": 25,
    "MC": 27,
    "MD": 24,
    "ME": 22,
    "MK": 19,
    "MN": 20,
    "MR": 27,
    "MT": 31,
    "MU": 30,
    "NI": 28,
    "NL": 18,
    "NO": 15,
    "OM": 23,
    "PK": 24,
    "PL": 28,
    "PS": 29,
    "PT": 25,
    "QA": 29,
    "RO": 24,
    "RS": 22,
    "RU": 33,
    "SA": 24,
    "SC": 31,
    "SD": 18,
    "SE": 24,
    "SI": 19,
    "SK": 24,
    "SM": 27,
    "SO": 23,
    "ST": 25,
    "SV": 28,
    "TL": 23,
    "TN": 24,
    "TR": 26,
    "UA": 29,
    "VA": 22,
    "VG": 24,
    "XK": 20,
    "YE": 30,
}


_B36 = {c: str(int(c, 36)) for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def iban_ok(candidate: bytes, strict: bool = False) -> bool:
    s = candidate.decode("ascii").replace(" ", "").upper()
    want = IBAN_LENGTHS.get(s[:2])
    if want is None:
        if not strict or not 15 <= len(s) <= 34:
            return False
    elif len(s) != want:
        return False
    if not s[2:4].isdigit():
        return False
    rearranged = s[4:] + s[:4]
    try:
        n = int("".join([_B36[c] for c in rearranged]))
    except KeyError:
        return False
    return n % 97 == 1


# ---------------------------------------------------------------------------------------------
# US SSN: area 001–899 except 666, group 01–99, serial 0001–9999.


def ssn_ok(candidate: bytes) -> bool:
    d = re.sub(rb"\D", b"", candidate)
    if len(d) != 9:
        return False
    area, group, serial = int(d[:3]), int(d[3:5]), int(d[5:])
    return 0 < area < 900 and area != 666 and group > 0 and serial > 0


# ---------------------------------------------------------------------------------------------
# Phone numbers

_PHONE_SEPS = frozenset(b" .-/()")


def _phone_groups(s: bytes) -> list[bytes]:
    return [g for g in re.split(rb"[^0-9]+", s) if g]


def _looks_like_date(groups: list[bytes], s: bytes) -> bool:
    """dd.mm.yyyy / mm/dd/yyyy / yyyy-mm-dd shapes (any year), possibly followed by an hour."""
    if len(groups) < 3:
        return False
    a, b, c = groups[0], groups[1], groups[2]
    if len(a) <= 2 and len(b) <= 2 and len(c) == 4:
        return 1 <= int(a) <= 31 and 1 <= int(b) <= 31
    if len(a) == 4 and len(b) <= 2 and len(c) <= 2:
        return 1 <= int(b) <= 12 and 1 <= int(c) <= 31
    return False


def phone_international_ok(candidate: bytes) -> bool:
    """`+CC …` or `00CC …`: 8–15 digits after the prefix, separators that group (not a decimal)."""
    s = candidate
    if not s.startswith(b"+") and _looks_like_date(_phone_groups(s), s):
        return False  # 0099-01-01 10: a date, not 00 + country code
    body = s[1:] if s.startswith(b"+") else s[2:]
    body_digits = re.sub(rb"\(0\)", b"", body)
    digits = re.sub(rb"\D", b"", body_digits)
    if not 8 <= len(digits) <= 15 or digits[:1] == b"0":
        return False
    seps = re.findall(rb"[^0-9]+", body)
    if len(seps) == 1 and seps[0] == b".":
        return False  # +3.14159265: a signed decimal, not a phone
    if any(len(x) > 2 and x not in (b") (",) for x in seps):
        return False
    if b"(" in body and body.count(b"(") != body.count(b")"):
        return False
    return len(set(digits)) >= 3


def nanp_ok(candidate: bytes) -> bool:
    """North American numbers: NXX area code (not N11) and NXX exchange."""
    digits = re.sub(rb"\D", b"", candidate)
    if len(digits) == 11 and digits[:1] == b"1":
        digits = digits[1:]
    if len(digits) != 10:
        return False
    area, exch = digits[:3], digits[3:6]
    if area[:1] in b"01" or area[1:] == b"11" or exch[:1] in b"01":
        return False
    groups = _phone_groups(candidate)
    return not _looks_like_date(groups, candidate)


def phone_national_eu_ok(candidate: bytes) -> bool:
    """Trunk-prefix national numbers (0…): 9–12 digits in at least two groups, not a date."""
    if candidate.startswith(b"00"):
        return phone_international_ok(candidate)
    digits = re.sub(rb"\D", b"", candidate)
    if not 9 <= len(digits) <= 12 or digits[1:2] == b"0":
        return False
    groups = _phone_groups(candidate)
    if len(groups) < 2 or _looks_like_date(groups, candidate):
        return False
    if candidate.count(b"/") > 1 or candidate.count(b".") == 1 and len(groups) == 2:
        return False
    seps = set(re.findall(rb"[^0-9()]+", candidate))
    if len(seps) > 2:
        return False
    return len(set(digits)) >= 3


def phone_context_ok(candidate: bytes) -> bool:
    """A number right after a word like `phone:`: 7–15 digits, not a date or a time."""
    digits = re.sub(rb"\D", b"", candidate)
    if not 7 <= len(digits) <= 15 or len(set(digits)) < 3:
        return False
    groups = _phone_groups(candidate)
    return not _looks_like_date(groups, candidate)


# ---------------------------------------------------------------------------------------------
# Secrets


def shannon_entropy(s: bytes) -> float:
    """Bits per symbol of the byte string."""
    if not s:
        return 0.0
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


# Substring tests on the lower-cased value (C-speed `in`; a case-insensitive regex alternation
# of these words is an order of magnitude slower on long values).
_PLACEHOLDER_WORDS = (
    b"xxxx",
    b"your",
    b"example",
    b"placeholder",
    b"changeme",
    b"change_me",
    b"change-me",
    b"redacted",
    b"dummy",
    b"sample",
    b"<",
    b">",
    b"...",
    b"****",
    b"${",
    b"{{",
    b"%(",
    b"0000000000",
    b"123456789",
    b"abcdefghij",
    b"insert",
    b"replace",
)
_TEMPLATE_START = re.compile(rb"^(?:\$\(|\[|\{|%s|\$[A-Za-z_][A-Za-z0-9_]*$)")


def looks_placeholder(value: bytes) -> bool:
    """`sk-xxxx`, `<YOUR_KEY>`, `${TOKEN}`, `$TOKEN`, `****`, `AKIA…EXAMPLE`: documentation, not a secret."""
    low = value.lower()
    if any(w in low for w in _PLACEHOLDER_WORDS) or _TEMPLATE_START.match(value):
        return True
    distinct = len(set(low))
    return distinct <= 3 or (len(value) >= 16 and distinct < 6)


_LOWER = bytes(range(97, 123))
_UPPER = bytes(range(65, 91))
_DIGIT = b"0123456789"


def char_classes(value: bytes) -> int:
    """How many of lower-case, upper-case and digits occur (0–3); C-speed via translate."""
    n = len(value)
    return (
        (len(value.translate(None, _LOWER)) != n)
        + (len(value.translate(None, _UPPER)) != n)
        + (len(value.translate(None, _DIGIT)) != n)
    )


def has_digit(value: bytes) -> bool:
    return len(value.translate(None, _DIGIT)) != len(value)


def token_ok(value: bytes) -> bool:
    """A vendor token body: not a placeholder and random-looking (two character classes)."""
    return not looks_placeholder(value) and char_classes(value) >= 2


_REFERENCE = re.compile(
    rb"""^(?:
        [A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?:\(.*)?   # self.token, os.getenv(...)
      | [A-Za-z_][A-Za-z0-9_]*\(.*                                     # get_token(...)
      | (?:null|none|nil|true|false|undefined|empty|required|optional|string|str|bytes|int|secret
           |password|token|hidden|masked|unset|n/a|na|tbd|todo|\*+|-+|_+|\.+)
    )$""",
    re.X | re.I,
)
_SNAKE_IDENT = re.compile(rb"^[a-z]+(?:_[a-z]+)+$|^[A-Z]+(?:_[A-Z]+)+$")


def assigned_secret_ok(name: bytes, value: bytes, quoted: bool) -> bool:
    """A literal assigned to a key-like name that is worth redacting.

    Passwords: any literal of 6+ characters with a digit, a symbol or mixed case (or 12+ long).
    Tokens and keys: 8+ characters with letters and digits, or high entropy.
    References (`$VAR`, `os.getenv(...)`, `settings.X`, `db_password`) and placeholders stay."""
    if len(value) < 6 or looks_placeholder(value) or _REFERENCE.match(value):
        return False
    if not quoted and (_SNAKE_IDENT.match(value) or value.lower() == name.lower()):
        return False
    low = name.lower()
    if any(w in low for w in (b"pass", b"pwd", b"secret")) or low.endswith(
        (b"auth", b"credential", b"credentials")
    ):
        if len(value) >= 12 and len(set(value)) >= 6:
            return True
        has_symbol = bool(value.translate(None, _LOWER + _UPPER + _DIGIT))
        return has_digit(value) or has_symbol or (char_classes(value) >= 2 and not value.istitle())
    if len(value) < 8:
        return False
    if char_classes(value) >= 2 and has_digit(value):
        return True
    return len(value) >= 16 and shannon_entropy(value) >= 3.5


def _b64url_decode(part: bytes) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        return None


def jwt_ok(candidate: bytes) -> bool:
    """Header decodes to a JSON object naming `alg` or `typ`."""
    header = _b64url_decode(candidate.split(b".", 1)[0])
    return (
        header is not None and header.lstrip().startswith(b"{") and (b'"alg"' in header or b'"typ"' in header)
    )


def basic_auth_ok(value: bytes) -> bool:
    """`Basic` credentials: base64 of printable `user:password`."""
    raw = value.rstrip(b"=")
    try:
        decoded = base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in decoded and all(32 <= b < 127 for b in decoded) and not looks_placeholder(decoded)


def bearer_ok(value: bytes) -> bool:
    if len(value) < 12 or looks_placeholder(value):
        return False
    if char_classes(value) >= 2:
        return True
    return any(c in value for c in b".-_~+/") and len(value) >= 20
