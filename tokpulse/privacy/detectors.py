"""What the guard looks for: one `Detector` per kind of PII or credential.

Each detector has
- `triggers`: short patterns for the fast multi-pattern scanner (Hyperscan). A trigger must
  occur inside every real match; it fires once per candidate, so the Python side only runs
  where something may be.
- `regex`: the exact pattern (Python `re`, bytes), run on a small window around each trigger.
  Every regex starts with a lookbehind or a literal so that a window edge can't cut a token.
- `before`/`after`: how far from the trigger's end a match may start/end (the window).
- `check`: the exact validation (Luhn, mod-97, ranges, context, entropy, placeholders).
- `kind`: the placeholder type, `[KIND_REDACTED]` (or `[KIND_n]` in reversible mode).

Placeholders (all credential families share API_KEY except where a more specific word helps
the reader): EMAIL, PHONE, CREDIT_CARD, IBAN, SSN, IP_ADDRESS (strict), API_KEY (vendor keys,
bearer tokens, Authorization values), JWT, PRIVATE_KEY (PEM blocks), URL_CREDENTIALS
(`user:pass` in `scheme://user:pass@host`), SECRET (values assigned to password/secret/token
names, Basic credentials, AWS secret keys), custom patterns: their NAME upper-cased."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

from tokpulse.privacy import validators as v

# A check returns False (reject), True (accept), a kind (accept as that kind, e.g. Basic
# credentials found by the Authorization detector are SECRET) or a narrower (start, end).
Check = Callable[[re.Match[bytes], bytes, bool], "bool | str | tuple[int, int]"]
# A finder replaces the window regex for detectors whose trigger pins the match down exactly:
# finder(data, trigger_end, strict) -> [(start, end)] of the part to replace.
Finder = Callable[[bytes, int, bool], "list[tuple[int, int]]"]


@dataclass(frozen=True, eq=False)
class Detector:
    name: str
    kind: str
    triggers: tuple[bytes, ...]
    regex: re.Pattern[bytes]
    before: int
    after: int
    check: Check | None = None
    priority: int = 100
    strict_only: bool = False
    caseless: bool = False
    finder: Finder | None = None

    def span(self, m: re.Match[bytes]) -> tuple[int, int]:
        """The part of the match that is replaced (group `v` when the regex has one)."""
        for g in ("v", "v2", "v3"):
            if g in self.regex.groupindex and m.start(g) >= 0:
                return m.span(g)
        return m.span()


def _rx(pattern: bytes, flags: int = 0) -> re.Pattern[bytes]:
    return re.compile(pattern, flags | re.X)


def _group(m: re.Match[bytes], name: str = "v") -> bytes:
    return m.group(name) or b""


# ---------------------------------------------------------------------------------------------
# E-mail

_TLDS = frozenset(
    b"""com net org edu gov mil int info biz name pro aero coop museum mobi asia tel travel jobs cat post
    app dev page cloud tech online site store shop blog email mail digital agency company solutions services
    systems network software studio design media news live life world today space website xyz top club vip
    work one link click team global group center zone tools academy institute school university college city
    health care finance financial capital money bank insurance legal law consulting marketing partners
    ventures holdings enterprises industries international energy engineering events support help social
    community foundation fund africa berlin london nyc paris tokyo amsterdam wien swiss vegas miami boston
    quebec scot wales bayern hamburg koeln madrid barcelona istanbul moscow sydney melbourne ltd llc inc gmbh
    limited corp local internal test example invalid localhost lan home arpa onion ninja guru expert rocks
    codes build run host hosting server email cool fun game games store market market shopping love photo
    photos pics video tv movie music audio radio fm press report reviews review website web wiki family
    green earth eco red blue black pink gold shoes fashion clothing watch golf football bike
    bio farm garden house homes land properties property realestate rent rentals estate construction
    contractors plumbing repair cleaning auto car cars taxi flights hotel hotels restaurant cafe pizza bar
    beer wine coffee kitchen recipes menu delivery express direct plus now new best top vip meme lol ooo
    google amazon apple microsoft""".split()
)


_LOCAL_BYTES = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-" + bytes(
    range(0x80, 0x100)
)
_LOCAL_CHARS = frozenset(_LOCAL_BYTES)
# `]` ends a placeholder: text right after one never starts a match, so redacting a neighbour
# can't make a new match appear (idempotence). Every lookbehind below has `\]` for this, and
# every lookahead `\[`.
_LOCAL_BLOCK = _LOCAL_CHARS | {0x5D}
_USERINFO = re.compile(rb"[^\s/?#@\"'<>\[\]]*:?")
_DOMAIN = re.compile(
    rb"""(?:[A-Za-z0-9\x80-\xff](?:[A-Za-z0-9\x80-\xff-]{0,61}[A-Za-z0-9\x80-\xff])?\.){1,8}
    (?P<tld>xn--[A-Za-z0-9-]{1,59}|[A-Za-z\x80-\xff]{2,63})
    (?![A-Za-z0-9\x80-\xff_\[-]|\.[A-Za-z0-9\x80-\xff\[])""",
    re.X,
)


def _email_finder(data: bytes, to: int, strict: bool) -> list[tuple[int, int]]:
    """The trigger is `x@label.t`: the local part is the run of local-part characters before
    the `@` (1–64, not starting with a dot), the domain is matched after it. A domain with
    several dots fires the trigger once per dot; the first one does the work."""
    at = data.rfind(b"@", max(0, to - 67), to)
    if at < 0 or data.find(b".", at, to - 1) != to - 2:
        return []  # not the first dot after this @: already handled
    lo = max(0, at - 65)
    start = lo + len(data[lo:at].rstrip(_LOCAL_BYTES))
    if not 0 < at - start <= 64 or (start > 0 and data[start - 1] in _LOCAL_BLOCK) or data[start] == 0x2E:
        return []
    d = _DOMAIN.match(data, at + 1, min(len(data), at + 300))
    if d is None:
        return []
    tld = d.group("tld").lower()
    if not (strict or len(tld) == 2 or tld in _TLDS or tld.startswith(b"xn--")):
        return []
    # `git@github.com:org/repo.git`: an SSH remote, not a person.
    if data[start:at] == b"git" and data[d.end() : d.end() + 1] == b":":
        return []
    # `scheme://user@host` / `scheme://user:pass@host`: URL user-info (a Sentry DSN key, or
    # credentials the URL detector handles), not an address.
    if start >= 3 and data[start - 1] in (0x2F, 0x3A):
        prev = data[max(0, start - 100) : start]
        k = prev.rfind(b"://")
        if k >= 0 and _USERINFO.fullmatch(prev, k + 3):
            return []
    return [(start, d.end())]


_ENC_LOCAL_BYTES = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-"


def _email_urlencoded_finder(data: bytes, to: int, strict: bool) -> list[tuple[int, int]]:
    """`john.doe%40example.com` in a query string or a form body (the trigger ends after `%40x`)."""
    at = to - 4  # the `%` of `%40`
    lo = max(0, at - 120)
    start = lo + len(data[lo:at].rstrip(_ENC_LOCAL_BYTES))
    if not 0 < at - start <= 120 or (start > 0 and data[start - 1] == 0x5D) or data[start] == 0x2E:
        return []
    d = _DOMAIN.match(data, at + 3, min(len(data), at + 300))
    if d is None:
        return []
    tld = d.group("tld").lower()
    if not (strict or len(tld) == 2 or tld in _TLDS or tld.startswith(b"xn--")):
        return []
    return [(start, d.end())]


EMAIL_URLENCODED = Detector(
    name="email_urlencoded",
    kind="EMAIL",
    triggers=(rb"[A-Za-z0-9._+-]%40[A-Za-z0-9]",),
    regex=re.compile(rb"[A-Za-z0-9._%+-]{1,120}%40[A-Za-z0-9.-]+"),  # documentation; the finder runs
    before=130,
    after=300,
    priority=480,
    finder=_email_urlencoded_finder,
)

EMAIL_REGEX = _rx(
    rb"""(?<![A-Za-z0-9._%+\x80-\xff\]-])
    (?P<v>[A-Za-z0-9_%+\x80-\xff-][A-Za-z0-9._%+\x80-\xff-]{0,63}
      @(?:[A-Za-z0-9\x80-\xff](?:[A-Za-z0-9\x80-\xff-]{0,61}[A-Za-z0-9\x80-\xff])?\.){1,8}
      (?P<tld>xn--[A-Za-z0-9-]{1,59}|[A-Za-z\x80-\xff]{2,63}))
    (?![A-Za-z0-9\x80-\xff_\[-]|\.[A-Za-z0-9\x80-\xff\[])"""
)

EMAIL = Detector(
    name="email",
    kind="EMAIL",
    triggers=(
        rb"[A-Za-z0-9._%+\x80-\xff-]@[A-Za-z0-9\x80-\xff][A-Za-z0-9\x80-\xff-]{0,62}\.[A-Za-z\x80-\xff]",
    ),
    regex=EMAIL_REGEX,  # documentation and the fallback-free reference; the finder is what runs
    before=70,
    after=300,
    priority=480,
    finder=_email_finder,
)

# ---------------------------------------------------------------------------------------------
# Phone numbers


_IBAN_HEAD = re.compile(rb"[A-Z]{2}\d{2}(?: [A-Z0-9]{4})* \Z")


def _in_iban(data: bytes, start: int) -> bool:
    """The digits continue a space-grouped IBAN (one that failed its checksum, say)."""
    return (
        start > 8
        and data[start - 1] == 0x20
        and _IBAN_HEAD.search(data, max(0, start - 40), start) is not None
    )


def _phone_intl(m: re.Match[bytes], data: bytes, strict: bool) -> bool:
    return v.phone_international_ok(_group(m)) and not _in_iban(data, m.start("v"))


def _phone_nanp(m: re.Match[bytes], data: bytes, strict: bool) -> bool:
    return v.nanp_ok(_group(m)) and not _in_iban(data, m.start("v"))


def _phone_eu(m: re.Match[bytes], data: bytes, strict: bool) -> bool:
    return v.phone_national_eu_ok(_group(m)) and not _in_iban(data, m.start("v"))


def _phone_bare(m: re.Match[bytes], data: bytes, strict: bool) -> bool:
    return 10 <= len(_group(m)) <= 11 and v.phone_context_ok(_group(m))


def _phone_ctx(m: re.Match[bytes], data: bytes, strict: bool) -> bool:
    return v.phone_context_ok(_group(m))


# A number ends at a non-alphanumeric; `-x`/`.5`/`:30` continue it (UUIDs, decimals, times).
_NUM_END = rb"(?![0-9A-Za-z_\[]|[.,:/][0-9\[]|-[0-9A-Za-z\[])"

PHONE_INTL = Detector(
    name="phone_international",
    kind="PHONE",
    triggers=(rb"(?:\+|(?:^|[^0-9A-Za-z_])00)[1-9](?:[ .()-]{0,3}\d){6}",),
    regex=_rx(
        rb"""(?<![A-Za-z0-9_+.\-/\]])
        (?P<v>(?:\+|00)[1-9]\d{0,3}(?:[ .-]{0,2}(?:\(\d{1,5}\)|\d{1,14})){1,8})"""
        + _NUM_END
    ),
    before=40,
    after=40,
    check=_phone_intl,
    priority=470,
)

PHONE_NANP = Detector(
    name="phone_nanp",
    kind="PHONE",
    triggers=(rb"(?:^|[^0-9A-Za-z_])\d{3}[ .)-]{1,2}\d{3}[ .-]\d{4}",),
    regex=_rx(
        rb"""(?<![A-Za-z0-9_+.\-/\]])
        (?P<v>(?:1[ .-]?)?(?:\(\d{3}\)[ ]?|\d{3}[ .-])\d{3}[ .-]\d{4})"""
        + _NUM_END
    ),
    before=24,
    after=4,
    check=_phone_nanp,
    priority=465,
)

PHONE_EU = Detector(
    name="phone_national_eu",
    kind="PHONE",
    triggers=(rb"(?:^|[^0-9A-Za-z_.+/:-])0[1-9](?:[ .()/-]{0,2}\d){7}",),
    regex=_rx(
        rb"""(?<![A-Za-z0-9_+.\-/:\]])
        (?P<v>(?:\(0\d{1,4}\)|0[1-9]\d{0,4})(?:[ .\-/]{1,2}\d{2,8}){1,5})"""
        + _NUM_END
    ),
    before=30,
    after=40,
    check=_phone_eu,
    priority=460,
)

PHONE_EU_BARE = Detector(
    name="phone_national_bare",
    kind="PHONE",
    triggers=(rb"(?:^|[^0-9A-Za-z_.+/:-])0[1-9]\d{8}",),
    regex=_rx(rb"(?<![A-Za-z0-9_+.\-/:\]])(?P<v>0[1-9]\d{8,10})" + _NUM_END),
    before=12,
    after=4,
    check=_phone_bare,
    priority=300,
    strict_only=True,
)

PHONE_CONTEXT = Detector(
    name="phone_context",
    kind="PHONE",
    triggers=(
        rb"(?:phone|mobile|tel|cell|fax|whatsapp|sms)(?:[ _-]?(?:number|no|num|nr))?\.?[\"']?[ \t]{0,3}"
        rb"[:=#]?[ \t]{0,3}[\"']?\+?\(?\d",
    ),
    regex=_rx(
        rb"""(?<![A-Za-z\]])(?:phone|mobile|tel|cell|fax|whatsapp|sms)(?:[ _-]?(?:number|no|num|nr))?\.?
        [\"']?[ \t]{0,3}[:=\#]?[ \t]{0,3}[\"']?
        (?P<v>\+?\(?\d[\d ().\-/]{5,22}\d)"""
        + _NUM_END,
        re.I,
    ),
    before=40,
    after=30,
    check=_phone_ctx,
    priority=455,
    caseless=True,
)

# ---------------------------------------------------------------------------------------------
# Payment cards, IBAN, SSN


def _card(m: re.Match[bytes], data: bytes, strict: bool) -> bool | tuple[int, int]:
    cand = _group(m)
    start, end = m.span("v")
    if _in_iban(data, start):
        return False
    if v.card_ok(cand, strict):
        return True
    # `card 4111 1111 1111 1111 2 items`, `qty 3 4111…`: neighbouring numbers joined the run;
    # try the runs of whole groups inside it, longest first.
    groups = [g.span() for g in _DIGIT_GROUP.finditer(cand)]
    k = len(groups)
    if k < 2 or (
        len(cand) - (k - 1) <= 16 and groups[0][1] - groups[0][0] >= 4 and groups[-1][1] - groups[-1][0] >= 4
    ):
        return False  # no stray short group at either end: nothing to trim
    spans = sorted(
        (
            (groups[i][0], groups[j][1])
            for i in range(min(3, k))
            for j in range(max(i, k - 3), k)
            if (i, j) != (0, k - 1)
        ),
        key=lambda se: se[0] - se[1],
    )
    for s, e in spans:
        if 13 <= e - s and v.card_ok(cand[s:e], strict):
            return (start + s, start + e)
    return False


_DIGIT_GROUP = re.compile(rb"\d+")


CREDIT_CARD = Detector(
    name="credit_card",
    kind="CREDIT_CARD",
    triggers=(rb"(?:^|[^0-9A-Za-z_.+-])[2-6]\d(?:[ -]?\d){11}",),
    regex=_rx(rb"(?<![0-9A-Za-z_.+\]\-])(?P<v>\d(?:[ -]?\d){12,18})" + _NUM_END),
    before=30,
    after=30,
    check=_card,
    priority=510,
)


def _iban(m: re.Match[bytes], data: bytes, strict: bool) -> bool | tuple[int, int]:
    cand = _group(m)
    if v.iban_ok(cand, strict):
        return True
    # `DE89 3704 0044 0532 0130 00 EUR`: the last space-separated group may be the next word.
    start, end = m.span("v")
    for _ in range(2):
        cut = cand.rfind(b" ")
        if cut < 0:
            return False
        cand, end = cand[:cut], start + cut
        if v.iban_ok(cand, strict):
            return (start, end)
    return False


IBAN = Detector(
    name="iban",
    kind="IBAN",
    triggers=(rb"(?:^|[^A-Za-z0-9])[A-Z]{2}\d{2} ?[A-Z0-9]{4} ?[A-Z0-9]{4}",),
    regex=_rx(
        rb"""(?<![A-Za-z0-9\]])
        (?P<v>[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?:[ ][A-Z0-9]{4}){2,7}(?:[ ][A-Z0-9]{1,4})?))
        (?![A-Za-z0-9\[])"""
    ),
    before=16,
    after=40,
    check=_iban,
    priority=520,
)


def _ssn(m: re.Match[bytes], data: bytes, strict: bool) -> bool:
    return v.ssn_ok(_group(m))


SSN = Detector(
    name="ssn",
    kind="SSN",
    triggers=(rb"(?:^|[^0-9A-Za-z_.-])\d{3}-\d{2}-\d{4}",),
    regex=_rx(rb"(?<![0-9A-Za-z_.\]\-])(?P<v>\d{3}-\d{2}-\d{4})(?![0-9A-Za-z_\[]|-[0-9\[])"),
    before=12,
    after=2,
    check=_ssn,
    priority=500,
)

SSN_CONTEXT = Detector(
    name="ssn_context",
    kind="SSN",
    triggers=(rb"(?:ssn|social[ _-]security)",),
    regex=_rx(
        rb"""(?<![A-Za-z\]])(?:ssn|social[ _-]security(?:[ _-](?:number|no))?)\.?[\"']?[ \t]{0,3}[:=\#]?
        [ \t]{0,3}[\"']?(?P<v>\d{3}[ -]?\d{2}[ -]?\d{4})(?![0-9\[])""",
        re.I,
    ),
    before=24,
    after=40,
    check=_ssn,
    priority=505,
    caseless=True,
)

# ---------------------------------------------------------------------------------------------
# IP addresses (strict mode only: in ops logs they are usually infrastructure, not people)

_OCTET = rb"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"


def _ipv4(m: re.Match[bytes], data: bytes, strict: bool) -> bool:
    ctx = data[max(0, m.start() - 12) : m.start()].lower()
    return not any(w in ctx for w in (b"version", b"ver ", b"ver.", b"release", b"v "))


IPV4 = Detector(
    name="ipv4",
    kind="IP_ADDRESS",
    triggers=(rb"(?:^|[^0-9A-Za-z_.-])\d{1,3}\.\d{1,3}\.\d{1,3}\.\d",),
    regex=_rx(
        rb"(?<![0-9A-Za-z_.\]\-])(?P<v>(?:" + _OCTET + rb"\.){3}" + _OCTET + rb")(?![0-9A-Za-z_\[]|\.[0-9\[])"
    ),
    before=16,
    after=4,
    check=_ipv4,
    priority=300,
    strict_only=True,
)


def _ipv6(m: re.Match[bytes], data: bytes, strict: bool) -> bool:
    s = _group(m).decode("ascii")
    if s.count(":") < 2 or (s.count(":") < 7 and "::" not in s) or sum(c.isalnum() for c in s) < 2:
        return False
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return True


IPV6 = Detector(
    name="ipv6",
    kind="IP_ADDRESS",
    triggers=(rb"[0-9A-Fa-f]::|::[0-9A-Fa-f]|(?:[0-9A-Fa-f]{1,4}:){3}[0-9A-Fa-f]",),
    regex=_rx(
        rb"""(?<![0-9A-Za-z_:.\]])
        (?P<v>(?:[0-9A-Fa-f]{1,4}|:)(?::[0-9A-Fa-f]{0,4}){1,7}(?:(?<=:)(?:\d{1,3}\.){3}\d{1,3})?)
        (?![0-9A-Za-z_:\[]|\.[0-9\[])"""
    ),
    before=48,
    after=48,
    check=_ipv6,
    priority=290,
    strict_only=True,
)

# ---------------------------------------------------------------------------------------------
# Credentials with a recognisable shape


def _tok(m: re.Match[bytes], data: bytes, strict: bool) -> bool:
    return v.token_ok(_group(m))


def _tok3(m: re.Match[bytes], data: bytes, strict: bool) -> bool:
    # OpenAI/Anthropic bodies are random base64url: all three classes. This keeps kebab-case
    # names such as `sk-dashboard-service-v2` out.
    body = _group(m)
    return v.token_ok(body) and v.char_classes(body) == 3


def _not_placeholder(m: re.Match[bytes], data: bytes, strict: bool) -> bool:
    return not v.looks_placeholder(_group(m))


def _vendor(
    name: str,
    triggers: tuple[bytes, ...],
    body: bytes,
    maxlen: int,
    check: Check = _tok,
    end: bytes = rb"(?![A-Za-z0-9_\[-])",
    kind: str = "API_KEY",
) -> Detector:
    return Detector(
        name=name,
        kind=kind,
        triggers=tuple(rb"(?:^|[^A-Za-z0-9_-])" + t for t in triggers),
        regex=_rx(rb"(?<![A-Za-z0-9_\]-])(?P<v>" + body + rb")" + end),
        before=maxlen + 4,
        after=maxlen + 4,
        check=check,
        priority=700,
    )


VENDOR_TOKENS: tuple[Detector, ...] = (
    _vendor(
        "openai_key",
        (rb"sk-[A-Za-z0-9_-]{16}",),
        rb"sk-(?!ant-)(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,250}",
        270,
        _tok3,
    ),
    _vendor("anthropic_key", (rb"sk-ant-",), rb"sk-ant-[a-z]{2,8}\d{0,3}-[A-Za-z0-9_-]{20,250}", 280, _tok3),
    _vendor("github_token", (rb"gh[pousr]_[A-Za-z0-9]{16}",), rb"gh[pousr]_[A-Za-z0-9]{30,251}", 260),
    _vendor("github_fine_grained_token", (rb"github_pat_",), rb"github_pat_[A-Za-z0-9_]{22,255}", 270),
    _vendor(
        "gitlab_token",
        (
            rb"gl(?:pat|dt|rt|ptt|cbt|oas|soat|ffct|imt|agent|wt)-[A-Za-z0-9_-]{8}",
            rb"GR1348941[A-Za-z0-9_-]{8}",
        ),
        rb"(?:gl(?:pat|dt|rt|ptt|cbt|oas|soat|ffct|imt|agent|wt)-|GR1348941)[A-Za-z0-9_-]{20,200}"
        rb"(?:\.[A-Za-z0-9_-]{2,100}){0,2}",
        320,
    ),
    _vendor(
        "aws_access_key_id",
        (rb"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z2-7]{16}",),
        rb"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z2-7]{16}",
        20,
        _not_placeholder,  # base32 upper-case: often a single character class
        end=rb"(?![A-Za-z0-9\[])",
    ),
    _vendor("google_api_key", (rb"AIza[0-9A-Za-z_-]{8}",), rb"AIza[0-9A-Za-z_-]{35}", 40),
    _vendor("google_oauth_secret", (rb"GOCSPX-",), rb"GOCSPX-[A-Za-z0-9_-]{28}", 40),
    _vendor("google_oauth_token", (rb"ya29\.[0-9A-Za-z_-]{8}",), rb"ya29\.[0-9A-Za-z_-]{20,2048}", 2060),
    _vendor("stripe_key", (rb"[sr]k_(?:live|test)_",), rb"[sr]k_(?:live|test)_[0-9A-Za-z]{10,247}", 260),
    _vendor("stripe_webhook_secret", (rb"whsec_",), rb"whsec_[A-Za-z0-9+/]{24,100}", 110),
    _vendor(
        "slack_token",
        (rb"xox[abposre][.-]", rb"xapp-\d"),
        rb"(?:xox[abposre](?:\.xox[bp])?|xapp)-[0-9A-Za-z-]{10,250}",
        270,
        end=rb"(?![A-Za-z0-9_\[])",
    ),
    _vendor(
        "twilio_sid",
        (rb"(?:AC|SK)[0-9a-f]{32}",),
        rb"(?:AC|SK)[0-9a-f]{32}",
        36,
        end=rb"(?![A-Za-z0-9\[])",
    ),
    _vendor("sendgrid_key", (rb"SG\.[A-Za-z0-9_-]{22}\.",), rb"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}", 72),
    _vendor("npm_token", (rb"npm_[A-Za-z0-9]{8}",), rb"npm_[A-Za-z0-9]{36}", 44),
    _vendor("pypi_token", (rb"pypi-AgE",), rb"pypi-AgE[A-Za-z0-9_-]{50,400}", 420),
    _vendor(
        "huggingface_token",
        (rb"hf_[A-Za-z0-9]{12}", rb"api_org_"),
        rb"(?:hf_|api_org_)[A-Za-z0-9]{30,40}",
        50,
    ),
)


def _slack_hook(m: re.Match[bytes], data: bytes, strict: bool) -> bool:
    path = m.group(0).split(b"slack.com/", 1)[1]
    return not v.looks_placeholder(path.split(b"/", 1)[-1])


SLACK_WEBHOOK = Detector(
    name="slack_webhook",
    kind="API_KEY",
    triggers=(rb"hooks\.slack\.com/",),
    regex=_rx(rb"https?://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{20,300}+(?!\[)"),
    before=30,
    after=320,
    check=_slack_hook,
    priority=790,
)


def _jwt(m: re.Match[bytes], data: bytes, strict: bool) -> bool:
    return v.jwt_ok(_group(m))


JWT = Detector(
    name="jwt",
    kind="JWT",
    triggers=(rb"eyJ[A-Za-z0-9_-]{8}",),
    regex=_rx(
        rb"""(?<![A-Za-z0-9_\]-])
        (?P<v>eyJ[A-Za-z0-9_-]{8,2000}\.[A-Za-z0-9_-]{4,8000}(?:\.[A-Za-z0-9_-]{0,4000}){1,3})
        (?![A-Za-z0-9_\[-])"""
    ),
    before=16,
    after=14100,
    check=_jwt,
    priority=650,
)

PEM_PRIVATE_KEY = Detector(
    name="private_key",
    kind="PRIVATE_KEY",
    triggers=(rb"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY",),
    regex=_rx(
        rb"""-----BEGIN[ ][A-Z0-9 ]{0,40}PRIVATE[ ]KEY(?:[ ]BLOCK)?-----
        (?: (?:(?!-----BEGIN).){0,20000}?-----END[ ][A-Z0-9 ]{0,40}PRIVATE[ ]KEY(?:[ ]BLOCK)?-----
          | (?:(?!-----)[A-Za-z0-9+/=:,\- \t\r\n]|\\[nr]){0,20000} )""",
        re.S,
    ),
    before=60,
    after=20100,
    priority=900,
)


_TEMPLATE_PW = re.compile(
    rb"^(?:\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|<[^>]*>|\{\{?[^}]*\}\}?|%(?:\(\w+\))?s|[*x.]+)$"
)


def _url_creds(m: re.Match[bytes], data: bytes, strict: bool) -> bool:
    user, _, pw = _group(m).partition(b":")
    # `user:***@host` (already masked, e.g. settings.mask_url), `${DB_PASSWORD}`, `<password>`
    return bool(pw) and not _TEMPLATE_PW.match(pw)


URL_CREDENTIALS = Detector(
    name="url_credentials",
    kind="URL_CREDENTIALS",
    triggers=(rb"://[^\s/@:]{0,64}:[^\s/@]{1,128}@",),
    regex=_rx(
        rb"""(?<![A-Za-z0-9+.\]\-])[A-Za-z][A-Za-z0-9+.\-]{1,30}://
        (?P<v>[^\s/?\#@:\"'<>\[\]]{0,64}:[^\s/@\"'<>]{1,128})@(?=[A-Za-z0-9._\-]|\[[0-9A-Fa-f:.]+\])"""
    ),
    before=240,
    after=4,
    check=_url_creds,
    priority=800,
)

# ---------------------------------------------------------------------------------------------
# Credentials found by context


def _aws_secret(m: re.Match[bytes], data: bytes, strict: bool) -> bool:
    val = _group(m)
    return not v.looks_placeholder(val) and v.char_classes(val) >= 2 and v.shannon_entropy(val) >= 3.5


AWS_SECRET_KEY = Detector(
    name="aws_secret_access_key",
    kind="SECRET",
    triggers=(rb"(?:secret_?access_?key|aws_?secret)",),
    regex=_rx(
        rb"""(?:aws_?secret_?(?:access_?)?key|secret_?access_?key)(?:_id)?
        \\?[\"']?[ \t]{0,3}(?::=|=>|[:=]|[ \t])
        [ \t]{0,3}\\?[\"']?(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=\[])""",
        re.I,
    ),
    before=40,
    after=60,
    check=_aws_secret,
    priority=640,
    caseless=True,
)


def _authz(m: re.Match[bytes], data: bytes, strict: bool) -> bool | str:
    scheme = (m.group("scheme") or b"").lower()
    val = _group(m)
    if scheme == b"basic":
        return "SECRET" if v.basic_auth_ok(val) or not v.looks_placeholder(val) else False
    if v.looks_placeholder(val) or val.lower() in (b"bearer", b"basic", b"token"):
        return False
    return v.char_classes(val) >= 2 or len(val) >= 20


AUTHORIZATION = Detector(
    name="authorization_header",
    kind="API_KEY",
    triggers=(rb"authorization\\?[\"']?[ \t]{0,3}[:=]",),
    regex=_rx(
        rb"""(?<![A-Za-z0-9_\]])(?:proxy-)?authorization\\?[\"']?[ \t]{0,3}[:=][ \t]{0,3}\\?[\"']?
        (?:(?P<scheme>bearer|basic|token|bot|apikey|api-key|digest|negotiate|ntlm|sso-key)[ \t]+)?
        (?P<v>[A-Za-z0-9._~+/=:,\-]{8,4096}+)(?!\[)""",
        re.I,
    ),
    before=40,
    after=4150,
    check=_authz,
    priority=600,
    caseless=True,
)


def _bearer(m: re.Match[bytes], data: bytes, strict: bool) -> bool:
    return v.bearer_ok(_group(m))


BEARER = Detector(
    name="bearer_token",
    kind="API_KEY",
    triggers=(rb"bearer[ \t]+[A-Za-z0-9._~+/-]{12}",),
    regex=_rx(
        rb"(?<![A-Za-z0-9_\]-])bearer[ \t]+(?P<v>[A-Za-z0-9._~+/-]{12,4096}=*)(?![A-Za-z0-9._~+/=\[-])", re.I
    ),
    before=24,
    after=4120,
    check=_bearer,
    priority=590,
    caseless=True,
)


def _basic(m: re.Match[bytes], data: bytes, strict: bool) -> bool:
    return v.basic_auth_ok(_group(m))


BASIC_AUTH = Detector(
    name="basic_auth",
    kind="SECRET",
    triggers=(rb"basic[ \t]+[A-Za-z0-9+/]{8}",),
    regex=_rx(
        rb"(?<![A-Za-z0-9_\]-])basic[ \t]+(?P<v>[A-Za-z0-9+/]{8,1024}={0,2})(?![A-Za-z0-9+/=\[])", re.I
    ),
    before=20,
    after=1040,
    check=_basic,
    priority=590,
    caseless=True,
)

_KEYWORDS = (
    rb"(?:password|passwd|passphrase|pwd|secret|token|api[_.-]?key|apikey|access[_.-]?key|secret[_.-]?key"
    rb"|private[_.-]?key|auth[_.-]?key|credentials?|auth)"
)
_QUOTE_SPACE = frozenset(b" \t\"'\\")
_SEP_CHARS = frozenset(b":=>")
_NAME_BYTES = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
_NAME_CHARS = frozenset(_NAME_BYTES)
# Every spelling _KEYWORDS matches, for a C-speed `endswith` on the lower-cased name.
_KEYWORD_ENDINGS = tuple(
    [
        b"password",
        b"passwd",
        b"passphrase",
        b"pwd",
        b"secret",
        b"token",
        b"apikey",
        b"credential",
        b"credentials",
        b"auth",
    ]
    + [
        a + sep + b"key"
        for a in (b"api", b"access", b"secret", b"private", b"auth")
        for sep in (b"", b"_", b".", b"-")
    ]
)
_VALUE = re.compile(
    rb"""[ \t]{0,3}
    (?: \\?\"(?P<v>[^\"\\\r\n]{1,300})\\?\"
      | '(?P<v2>[^'\r\n]{1,300})'
      | (?P<v3>[^\s\"'`,;)}\]<>\[]{1,300}+)(?!\[) )""",
    re.X,
)


def _assigned_finder(data: bytes, to: int, strict: bool) -> list[tuple[int, int]]:
    """The trigger ends right after the separator of `name = value` / `"name": "value"`; walk
    back to the name (it must end with a keyword) and match the value forward."""
    j = to - 1  # the value's first character; before it optional quote, spaces, separator
    while j > 0 and data[j - 1] in _QUOTE_SPACE:
        j -= 1
    sep_end = j
    if not (j > 0 and data[j - 1] in _SEP_CHARS):
        return []
    if data[sep_end : sep_end + 1] == b"=" or (data[sep_end : sep_end + 1] == b">" and data[j - 1] == 0x3D):
        return []  # `==` is a comparison; `=>`/`:=` are matched at their last character
    i = j - 1  # the separator
    if data[i - 1 : i + 1] in (b":=", b"=>"):
        i -= 1
    while i > 0 and data[i - 1] in (0x20, 0x09):
        i -= 1
    if i > 0 and data[i - 1] in (0x22, 0x27):
        i -= 1
        if i > 0 and data[i - 1] == 0x5C:
            i -= 1
    kw_end = i
    lo = max(0, kw_end - 60)
    start = lo + len(data[lo:kw_end].rstrip(_NAME_BYTES))
    if start == kw_end or (start > 0 and (data[start - 1] in _NAME_CHARS or data[start - 1] == 0x5D)):
        return []  # no name, or one longer than 60 characters (not a config key)
    name = data[start:kw_end].lstrip(b".-")
    if not name.lower().endswith(_KEYWORD_ENDINGS):
        return []
    val = _VALUE.match(data, sep_end, min(len(data), sep_end + 320))
    if val is None or not _assigned_ok(name, val, data):
        return []
    for g in ("v", "v2", "v3"):
        if val.start(g) >= 0:
            return [val.span(g)]
    return []  # pragma: no cover - one alternative always matched


def _assigned_ok(name: bytes, m: re.Match[bytes], data: bytes) -> bool:
    if name.lower() in (b"pwd", b"oldpwd"):  # the shell's working directory
        return False
    quoted = m.start("v3") < 0
    val = m.group("v") if m.start("v") >= 0 else m.group("v2") if m.start("v2") >= 0 else m.group("v3")
    if not quoted and (val.startswith((b"/", b"./", b"~/", b"../")) or re.match(rb"^[A-Za-z]:\\", val)):
        return False  # a path (`PASSWORD_FILE=/run/secrets/db` style values)
    return v.assigned_secret_ok(name, val, quoted)


ASSIGNED_SECRET = Detector(
    name="assigned_secret",
    kind="SECRET",
    # The trigger includes the value's first character, leaving out `$…`, `<…>`, `{…}`, `[…]`
    # (references and placeholders), which are the most common assignments in ops text.
    triggers=(_KEYWORDS + rb"\\?[\"']?[ \t]{0,3}(?::=|=>|[:=])[ \t]{0,3}\\?[\"']?[^\s$<{\[\"'\\]",),
    regex=_rx(
        rb"(?<![A-Za-z0-9_\]])(?P<name>[A-Za-z0-9_.\-]{0,40}?" + _KEYWORDS + rb")"
        rb"""\\?[\"']?[ \t]{0,3}(?::=|=>|[:=])[ \t]{0,3}
        (?: \\?\"(?P<v>[^\"\\\r\n]{1,300})\\?\"
          | '(?P<v2>[^'\r\n]{1,300})'
          | (?P<v3>[^\s\"'`,;)}\]<>]{1,300}) )""",
        re.I,
    ),
    before=80,
    after=320,
    priority=450,
    caseless=True,
    finder=_assigned_finder,
)


def _cli_flag(m: re.Match[bytes], data: bytes, strict: bool) -> bool:
    name = m.group("name")
    if not name.lower().replace(b"-", b"_").endswith(_KEYWORD_ENDINGS):
        return False
    quoted = m.start("v3") < 0
    val = m.group("v") if m.start("v") >= 0 else m.group("v2") if m.start("v2") >= 0 else m.group("v3")
    if not quoted and val.startswith((b"/", b"./", b"~/", b"../")):
        return False
    return v.assigned_secret_ok(name, val, quoted)


CLI_SECRET_FLAG = Detector(
    name="cli_secret_flag",
    kind="SECRET",
    triggers=(rb"--(?:[a-z0-9]+[-_])*(?:password|passwd|passphrase|token|secret|key)[ \t]+[^\s$<{\[-]",),
    regex=_rx(
        rb"""(?<![A-Za-z0-9_\]-])--(?P<name>(?:[A-Za-z0-9]+[-_]){0,4}(?:password|passwd|passphrase|token|secret|key))
        [ \t]+(?:\"(?P<v>[^\"\r\n]{1,300})\"|'(?P<v2>[^'\r\n]{1,300})'
                |(?P<v3>[^\s\"'`;|&<>\[]{1,300}+)(?!\[))""",
        re.I,
    ),
    before=80,
    after=320,
    check=_cli_flag,
    priority=450,
    caseless=True,
)

# Our own placeholders (and `[REDACTED]`) are protected: nothing that overlaps one is redacted,
# which is what makes `redact(redact(x)) == redact(x)` hold with custom patterns too.
PLACEHOLDER_RX = rb"\[(?:[A-Z][A-Z0-9]*_)*(?:REDACTED|[1-9][0-9]{0,8})\]"
PROTECT = Detector(
    name="placeholder",
    kind="",
    triggers=(PLACEHOLDER_RX,),
    regex=_rx(PLACEHOLDER_RX),
    before=120,
    after=2,
    priority=10_000,
)

BUILTIN: tuple[Detector, ...] = (
    PROTECT,
    PEM_PRIVATE_KEY,
    URL_CREDENTIALS,
    SLACK_WEBHOOK,
    *VENDOR_TOKENS,
    JWT,
    AWS_SECRET_KEY,
    AUTHORIZATION,
    BEARER,
    BASIC_AUTH,
    IBAN,
    CREDIT_CARD,
    SSN_CONTEXT,
    SSN,
    EMAIL,
    EMAIL_URLENCODED,
    PHONE_INTL,
    PHONE_NANP,
    PHONE_EU,
    PHONE_CONTEXT,
    PHONE_EU_BARE,
    ASSIGNED_SECRET,
    CLI_SECRET_FLAG,
    IPV4,
    IPV6,
)


def builtin_detectors(strict: bool) -> tuple[Detector, ...]:
    return tuple(d for d in BUILTIN if strict or not d.strict_only)
