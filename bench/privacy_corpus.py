"""Synthetic corpora for the privacy benchmark (deterministic for a seed).

- `mixed_corpus(size)`: a realistic mix for throughput — application logs, CI logs, JSON
  payloads, Markdown and config files — with sparse PII and credentials, as ops text has.
- `labelled_corpus(n)`: documents in the same formats where every PII/credential value
  inserted is recorded as a gold span (category + family), interleaved with the near-misses
  the guard must leave alone: Luhn-failing digit runs, dates, times, versions, UUIDs, git SHAs,
  order ids, ports, metric lines, placeholders (`sk-xxxx`, `<YOUR_KEY>`), bad IBAN checksums,
  out-of-range SSNs, hashes and base64 blobs.

Gold categories: email, phone, credit_card, iban, ssn, api_key (every vendor token family,
JWTs, bearer tokens, Slack webhooks), private_key, url_credentials (the `user:pass` part),
secret (values assigned to password/secret names, AWS secret keys, Basic credentials)."""

from __future__ import annotations

import base64
import json
import random
import string
from dataclasses import dataclass, field

ALNUM = string.ascii_letters + string.digits
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"
UPPER32 = string.ascii_uppercase + "234567"

FIRST = (
    "james mary john patricia robert jennifer michael linda david elizabeth sofia lukas emma noah mia leon "
    "chloe hugo giulia marco lucia pablo anna jan eva tomas".split()
)
LAST = (
    "smith johnson williams brown jones garcia miller davis rodriguez martinez muller schmidt schneider "
    "fischer dupont martin bernard rossi russo ferrari novak dvorak jansen devries".split()
)
DOMAINS = (
    "example.com gmail.com outlook.com yahoo.co.uk tokpulse.io acme-corp.com mail.example.org "
    "company.de posteo.de orange.fr libero.it web.de proton.me uni-heidelberg.de bigcorp.co.jp".split()
)
WORDS = (
    "the video upload failed because the transcoder timed out while processing segment metadata and the "
    "retry queue was full so we backed off exponentially before giving up on this batch of creators "
    "analytics "
    "dashboard shows engagement rate trending down after release".split()
)


@dataclass
class Span:
    start: int
    end: int
    category: str
    family: str


@dataclass
class Doc:
    fmt: str
    text: str
    spans: list[Span] = field(default_factory=list)


class _Builder:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.n = 0
        self.spans: list[Span] = []

    def t(self, s: str) -> _Builder:
        self.parts.append(s)
        self.n += len(s)
        return self

    def pii(self, s: str, category: str, family: str) -> _Builder:
        self.spans.append(Span(self.n, self.n + len(s), category, family))
        return self.t(s)

    def text(self) -> str:
        return "".join(self.parts)


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


IBAN_SPECS = {
    "DE": 22,
    "GB": 22,
    "FR": 27,
    "NL": 18,
    "ES": 24,
    "IT": 27,
    "BE": 16,
    "AT": 20,
    "CH": 21,
    "PL": 28,
}


class Gen:
    """Value generators (all from one seeded RNG)."""

    def __init__(self, seed: int = 7) -> None:
        self.r = random.Random(seed)

    def s(self, n: int, alphabet: str = ALNUM) -> str:
        return "".join(self.r.choice(alphabet) for _ in range(n))

    def num(self, lo: int, hi: int) -> int:
        return self.r.randint(lo, hi)

    def pick(self, seq):  # noqa: ANN001, ANN201
        return self.r.choice(seq)

    # -- PII -----------------------------------------------------------------------------------
    def email(self) -> str:
        f, last, d = self.pick(FIRST), self.pick(LAST), self.pick(DOMAINS)
        form = self.num(0, 5)
        if form == 0:
            return f"{f}.{last}@{d}"
        if form == 1:
            return f"{f}{self.num(1, 9999)}@{d}"
        if form == 2:
            return f"{f}+{self.pick(['news', 'billing', 'test'])}@{d}"
        if form == 3:
            return f"{f[0]}{last}@{d}".upper() if self.r.random() < 0.3 else f"{f[0]}{last}@{d}"
        if form == 4:
            return f"{f}_{last}@eu.{d}"
        return f"{last}.{f}@{d}"

    def _nanp(self) -> tuple[str, str, str]:
        area = str(self.num(2, 9)) + self.s(2, "0123456789")
        while area[1:] == "11":  # N11 codes are service numbers, not area codes
            area = str(self.num(2, 9)) + self.s(2, "0123456789")
        return area, str(self.num(2, 9)) + self.s(2, "0123456789"), self.s(4, "0123456789")

    def phone(self) -> str:
        d = lambda n: self.s(n, "0123456789")  # noqa: E731
        nz = lambda n: str(self.num(1, 9)) + d(n - 1)  # noqa: E731
        a, b, c = self._nanp()
        forms = [
            f"+1 {a} {b} {c}",
            f"+1-{a}-{b}-{c}",
            f"+1{a}{b}{c}",
            f"({a}) {b}-{c}",
            f"{a}-{b}-{c}",
            f"{a}.{b}.{c}",
            f"1-{a}-{b}-{c}",
            f"+1 ({a}) {b}-{c}",
            f"+44 20 {d(4)} {d(4)}",
            f"+44 7{d(3)} {d(6)}",
            f"020 {d(4)} {d(4)}",
            f"07{d(3)} {d(6)}",
            f"+49 30 {nz(8)}",
            f"+49 151 {nz(8)}",
            f"030 {nz(8)}",
            f"0151 {nz(8)}",
            f"030/{nz(7)}",
            f"+33 6 {d(2)} {d(2)} {d(2)} {d(2)}",
            f"06 {d(2)} {d(2)} {d(2)} {d(2)}",
            f"01.{d(2)}.{d(2)}.{d(2)}.{d(2)}",
            f"+39 02 {d(4)} {d(4)}",
            f"+39 347 {d(3)} {d(4)}",
            f"+34 612 {d(2)} {d(2)} {d(2)}",
            f"+34 91 {d(3)} {d(2)} {d(2)}",
            f"+31 6 {nz(8)}",
            f"020-{nz(7)}",
            f"+43 664 {nz(7)}",
            f"0044 20 {d(4)} {d(4)}",
            f"+44 (0)20 {d(4)} {d(4)}",
            f"+1.{a}.{b}.{c}",
            f"(020) {d(4)} {d(4)}",
            f"+49 (0)30 {nz(7)}",
            f"+61 2 {d(4)} {d(4)}",
            f"+81 3-{d(4)}-{d(4)}",
            f"+91 98{d(3)} {d(5)}",
            f"+55 11 9{d(4)}-{d(4)}",
            f"+353 1 {d(3)} {d(4)}",
            f"+48 {nz(3)} {d(3)} {d(3)}",
        ]
        return self.pick(forms)

    def card_digits(self) -> tuple[str, str]:
        brand = self.pick(["visa", "visa", "mc", "mc2", "amex", "discover", "jcb", "diners", "unionpay"])
        prefix, n = {
            "visa": ("4", 16),
            "mc": (str(self.num(51, 55)), 16),
            "mc2": (str(self.num(2221, 2720)), 16),
            "amex": (self.pick(["34", "37"]), 15),
            "discover": ("6011", 16),
            "jcb": (str(self.num(3528, 3589)), 16),
            "diners": ("36", 14),
            "unionpay": ("62", 16),
        }[brand]
        body = prefix + self.s(n - len(prefix) - 1, "0123456789")
        return brand, body + _luhn_digit(body)

    def card(self) -> str:
        brand, digits = self.card_digits()
        style = self.num(0, 2)
        if brand == "amex" and style:
            sep = " " if style == 1 else "-"
            return sep.join((digits[:4], digits[4:10], digits[10:]))
        if len(digits) == 16 and style:
            sep = " " if style == 1 else "-"
            return sep.join(digits[i : i + 4] for i in range(0, 16, 4))
        return digits

    def iban(self, valid: bool = True) -> str:
        cc = self.pick(list(IBAN_SPECS))
        bban = "".join(
            self.pick(string.digits if self.r.random() < 0.8 or cc != "GB" else string.ascii_uppercase)
            for _ in range(IBAN_SPECS[cc] - 4)
        )
        if cc == "GB":
            bban = self.s(4, string.ascii_uppercase) + bban[4:]
        num = int("".join(str(int(ch, 36)) for ch in bban + cc + "00"))
        check = 98 - num % 97
        if not valid:
            check = (check + self.num(1, 50)) % 97 + 2
        iban = f"{cc}{check:02d}{bban}"
        if self.r.random() < 0.5:
            return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
        return iban

    def ssn(self) -> str:
        area = self.num(1, 899)
        while area == 666:
            area = self.num(1, 899)
        return f"{area:03d}-{self.num(1, 99):02d}-{self.num(1, 9999):04d}"

    # -- credentials ---------------------------------------------------------------------------
    def api_key(self) -> tuple[str, str]:
        fam = self.pick(
            [
                "openai",
                "openai_proj",
                "openai_svcacct",
                "anthropic",
                "github",
                "github_fine",
                "github_oauth",
                "gitlab",
                "aws_id",
                "google",
                "stripe",
                "slack",
                "slack_webhook",
                "twilio",
                "sendgrid",
                "npm",
                "pypi",
                "huggingface",
                "jwt",
            ]
        )
        s = self.s
        val = {
            "openai": lambda: "sk-" + s(20) + "T3BlbkFJ" + s(20),
            "openai_proj": lambda: "sk-proj-" + s(156, B64URL),
            "openai_svcacct": lambda: "sk-svcacct-" + s(120, B64URL),
            "anthropic": lambda: "sk-ant-api03-" + s(93, B64URL) + "AA",
            "github": lambda: "ghp_" + s(36),
            "github_fine": lambda: "github_pat_" + s(22) + "_" + s(59),
            "github_oauth": lambda: self.pick(["gho_", "ghu_", "ghs_", "ghr_"]) + s(36),
            "gitlab": lambda: "glpat-" + s(20, B64URL),
            "aws_id": lambda: self.pick(["AKIA", "ASIA"]) + s(16, UPPER32),
            "google": lambda: "AIza" + s(35, B64URL),
            "stripe": lambda: self.pick(["sk_live_", "rk_live_", "sk_test_"]) + s(self.pick([24, 99])),
            "slack": lambda: (
                self.pick(["xoxb-", "xoxp-"])
                + s(12, string.digits)
                + "-"
                + s(13, string.digits)
                + "-"
                + s(24)
            ),
            "slack_webhook": lambda: (
                f"https://hooks.slack.com/services/T{s(8, UPPER32)}/B{s(10, UPPER32)}/{s(24)}"
            ),
            "twilio": lambda: self.pick(["AC", "SK"]) + s(32, HEX),
            "sendgrid": lambda: "SG." + s(22, B64URL) + "." + s(43, B64URL),
            "npm": lambda: "npm_" + s(36),
            "pypi": lambda: "pypi-AgEIcHlwaS5vcmc" + s(self.num(60, 180), B64URL),
            "huggingface": lambda: "hf_" + s(34, string.ascii_letters),
            "jwt": self.jwt,
        }[fam]()
        return fam, val

    def jwt(self) -> str:
        enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
        head = enc({"alg": self.pick(["HS256", "RS256", "ES256"]), "typ": "JWT"})
        body = enc({"sub": str(self.num(1, 10**9)), "iat": self.num(1.6e9, 1.8e9), "scope": "read write"})
        return f"{head}.{body}.{self.s(43, B64URL)}"

    def password(self) -> str:
        form = self.num(0, 3)
        if form == 0:
            return self.s(self.num(12, 24))
        if form == 1:
            return self.pick(WORDS).capitalize() + str(self.num(10, 9999)) + self.pick("!@#$%&*")
        if form == 2:
            return "-".join(self.pick(WORDS) for _ in range(4)) + str(self.num(1, 99))
        return self.s(self.num(8, 12), ALNUM + "!@#%^&*")

    def aws_secret(self) -> str:
        return self.s(40, ALNUM + "/+")

    def pem(self) -> str:
        kind = self.pick(["RSA ", "EC ", "", "OPENSSH "])
        lines = [self.s(64, ALNUM + "+/") for _ in range(self.num(4, 12))]
        return (
            f"-----BEGIN {kind}PRIVATE KEY-----\n" + "\n".join(lines) + f"\n-----END {kind}PRIVATE KEY-----"
        )

    # -- neutral and near-miss values ----------------------------------------------------------
    def ts(self) -> str:
        return (
            f"2024-{self.num(1, 12):02d}-{self.num(1, 28):02d}T{self.num(0, 23):02d}:{self.num(0, 59):02d}:"
            f"{self.num(0, 59):02d}.{self.num(0, 999):03d}Z"
        )

    def uuid(self) -> str:
        h = self.s(32, HEX)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def sha(self) -> str:
        return self.s(40, HEX)

    def version(self) -> str:
        return (
            self.pick(["", "v"])
            + ".".join(str(self.num(0, 20)) for _ in range(self.num(2, 4)))
            + self.pick(["", "", "-rc1", "-beta.2", "+build.5"])
        )

    def luhn_fail(self) -> str:
        _, digits = self.card_digits()
        bad = digits[:-1] + str((int(digits[-1]) + self.num(1, 9)) % 10)
        return bad

    def near_miss(self) -> str:
        g = self
        pick = self.num(0, 35)
        return [
            lambda: f"digits {g.luhn_fail()}",
            lambda: f"date {g.num(2019, 2025)}-{g.num(1, 12):02d}-{g.num(1, 28):02d}",
            lambda: (
                f"on {g.num(1, 28):02d}/{g.num(1, 12):02d}/{g.num(2019, 2025)} at "
                f"{g.num(0, 23):02d}:{g.num(0, 59):02d}"
            ),
            lambda: (
                f"am {g.num(1, 28):02d}.{g.num(1, 12):02d}.{g.num(2019, 2025)} "
                f"{g.num(10, 23)}:{g.num(10, 59)} Uhr"
            ),
            lambda: f"time {g.num(0, 23):02d}:{g.num(0, 59):02d}:{g.num(0, 59):02d}.{g.num(0, 999999):06d}",
            lambda: f"version {g.version()}",
            lambda: f"uuid {g.uuid()}",
            lambda: f"commit {g.sha()} ({g.sha()[:7]})",
            lambda: f"order ORD-{g.num(2019, 2025)}-{g.num(0, 999999):06d}",
            lambda: f"order #{g.num(10**8, 10**9)}",
            lambda: f"listening on 0.0.0.0:{g.num(1024, 65535)}",
            lambda: f'http_requests_total{{code="200",path="/v1"}} {g.num(1, 10**7)} {g.num(1.6e12, 1.8e12)}',
            lambda: f"process_resident_memory_bytes {g.num(10**9, 10**13)}",
            lambda: "OPENAI_API_KEY=sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            lambda: "api_key: <YOUR_KEY>",
            lambda: "password: ${DB_PASSWORD}",
            lambda: "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
            lambda: f"iban {g.iban(valid=False)}",
            lambda: f"ref {g.pick(['000', '666', '912'])}-{g.num(10, 99)}-{g.num(1000, 9999)}",
            lambda: f"sha256:{g.s(64, HEX)}",
            lambda: f'"integrity": "sha512-{g.s(86, ALNUM + "+/")}=="',
            lambda: f"request_id={g.s(32, HEX)}",
            lambda: f"epoch_ms={g.num(1.6e12, 1.8e12)} epoch_ns={g.num(1.6e18, 1.8e18)}",
            lambda: f"{g.num(1, 999)},{g.num(100, 999)},{g.num(100, 999)} rows",
            lambda: f"ISBN 978-{g.num(0, 9)}-{g.num(10, 99)}-{g.num(100000, 999999)}-{g.num(0, 9)}",
            lambda: f"build {g.num(2019, 2025)}{g.num(1, 12):02d}{g.num(1, 28):02d}.{g.num(1, 9)}",
            lambda: (
                f"token_count={g.num(1, 9000)} max_tokens={g.num(256, 4096)} prompt_tokens={g.num(1, 9000)}"
            ),
            lambda: f"trace_id={g.s(32, HEX)} span_id={g.s(16, HEX)}",
            lambda: (
                f"ts={g.num(2019, 2025)}{g.num(1, 12):02d}{g.num(1, 28):02d}"
                f"T{g.num(0, 23):02d}{g.num(10, 59)}{g.num(10, 59)}Z"
            ),
            lambda: f"epoch={g.num(1.6e9, 1.8e9)}.{g.num(0, 999999):06d}",
            lambda: f"price {g.num(1, 9)} {g.num(100, 999)},{g.num(10, 99)} EUR",
            lambda: f"color #{g.s(6, HEX)} at lat {g.r.random() * 90:.6f}, lon {g.r.random() * 180:.6f}",
            lambda: (
                f"test card 4242 4242 4242 424{g.num(0, 1)} declined"
                if False
                else f"serial SN-{g.s(12, '0123456789')}"
            ),
            lambda: f"password: {g.pick(['changeme', 'required', '********', '<redacted>', 'null'])}",
            lambda: f"Bearer token expired for session {g.uuid()}",
            lambda: f"see https://docs.example.com/v{g.num(1, 3)}/auth#token-{g.num(1, 9)}",
        ][pick]()

    def words(self, n: int) -> str:
        return " ".join(self.pick(WORDS) for _ in range(n))


# ---------------------------------------------------------------------------------------------
# Line templates: each writes one line into the builder, with or without a gold value.

CATEGORIES = (
    "email",
    "phone",
    "credit_card",
    "iban",
    "ssn",
    "api_key",
    "secret",
    "url_credentials",
    "private_key",
)
WEIGHTS = (14, 14, 12, 8, 8, 22, 12, 7, 3)


def _pii_line(g: Gen, b: _Builder, fmt: str, cat: str) -> None:
    ts = g.ts()
    if cat == "email":
        e = g.email()
        form = g.num(0, 3)
        if fmt == "json":
            b.t(f'  {{"event": "signup", "user": {{"id": {g.num(1, 10**6)}, "contact": "').pii(e, cat, cat).t(
                '"}},'
            )
        elif g.r.random() < 0.15:
            enc = e.replace("@", "%40").replace("+", "%2B")
            b.t(f"{ts} INFO  [api] GET /v1/unsubscribe?email=").pii(enc, cat, "email_urlencoded").t(
                f"&list=weekly 200 {g.num(1, 99)}ms"
            )
        elif g.r.random() < 0.1:
            b.t('<a href="mailto:').pii(e, cat, cat).t(f'">Contact support</a> for {g.words(2)}')
        elif form == 0:
            b.t(f"{ts} INFO  [auth] login ok user=").pii(e, cat, cat).t(
                f" mfa=true latency_ms={g.num(3, 900)}"
            )
        elif form == 1:
            b.t(f"{ts} WARN  [mailer] bounce for <").pii(e, cat, cat).t(">: 550 mailbox unavailable")
        else:
            b.t("Please reach out to ").pii(e, cat, cat).t(f" about the {g.words(3)}.")
    elif cat == "phone":
        p = g.phone()
        if fmt == "json":
            b.t('  {"customer": {"tel": "').pii(p, cat, cat).t(
                f'", "tier": "gold", "orders": {g.num(1, 99)}}}}},'
            )
        elif g.r.random() < 0.1 and p.startswith("+"):
            b.t('<a href="tel:').pii(p.replace(" ", "").replace("(0)", ""), cat, cat).t('">call us</a>')
        elif g.r.random() < 0.5:
            b.t(f"{ts} INFO  [notify] sms queued to ").pii(p, cat, cat).t(" template=otp_v2")
        else:
            b.t("For urgent issues call ").pii(p, cat, cat).t(" (24/7 on-call).")
    elif cat == "credit_card":
        c = g.card()
        if fmt == "json":
            b.t('  {"payment": {"card": "').pii(c, cat, cat).t(
                f'", "amount": {g.num(1, 999)}.{g.num(0, 99):02d}}}}},'
            )
        elif g.r.random() < 0.5:
            b.t(f"{ts} ERROR [billing] charge declined card=").pii(c, cat, cat).t(
                f" amount={g.num(1, 999)}.99 order #{g.num(10**8, 10**9)}"
            )
        else:
            b.t("Customer paid with card ").pii(c, cat, cat).t(
                f" on {g.num(1, 28)} May, receipt {g.num(10**5, 10**6)}."
            )
    elif cat == "iban":
        i = g.iban()
        b.t(f"{ts} INFO  [payouts] payout {g.num(1, 10**6)} to IBAN ").pii(i, cat, cat).t(" status=pending")
    elif cat == "ssn":
        s = g.ssn()
        if g.r.random() < 0.5:
            b.t(f"{ts} INFO  [kyc] submitted applicant ssn=").pii(s, cat, cat).t(" result=manual_review")
        else:
            b.t("Applicant SSN: ").pii(s, cat, cat).t(
                f", submitted {g.num(2019, 2025)}-0{g.num(1, 9)}-1{g.num(0, 9)}"
            )
    elif cat == "api_key":
        fam, k = g.api_key()
        form = g.num(0, 5)
        if fam == "slack_webhook":
            b.t("SLACK_WEBHOOK_URL=").pii(k, cat, fam)
        elif form == 0:
            b.t(f"export {fam.upper()}_TOKEN=").pii(k, cat, fam)
        elif form == 1:
            b.t(f'{ts} DEBUG [http] headers={{"Authorization": "Bearer ').pii(k, cat, fam).t(
                '", "Accept": "*/*"}'
            )
        elif form == 2:
            b.t(f"  {fam}_api_key: ").pii(k, cat, fam)
        elif form == 3:
            b.t(f"{ts} ERROR [gateway] upstream rejected key ").pii(k, cat, fam).t(" (401 Unauthorized)")
        elif form == 4:
            b.t(f'  "credentials": {{"{fam}": "').pii(k, cat, fam).t('"},')
        else:
            b.t('curl -sS -H "Authorization: token ').pii(k, cat, fam).t('" https://api.example.com/v1/me')
    elif cat == "secret":
        form = g.num(0, 6)
        if form == 6:
            flag = g.pick(["--password", "--token", "--api-key", "--db-password"])
            b.t(f"+ ./deploy.sh --env prod {flag} ").pii(g.password(), cat, "cli_flag").t(" --verbose")
        elif form == 0:
            b.t("DB_PASSWORD=").pii(g.password(), cat, "assigned")
        elif form == 1:
            b.t('  "client_secret": "').pii(g.password(), cat, "assigned").t('",')
        elif form == 2:
            b.t("  password: ").pii(g.password(), cat, "assigned")
        elif form == 3:
            b.t("aws_secret_access_key = ").pii(g.aws_secret(), cat, "aws_secret")
        elif form == 4:
            b.t('password = "').pii(g.password(), cat, "assigned").t('"  # TODO move to vault')
        else:
            cred = base64.b64encode(f"{g.pick(FIRST)}:{g.password()}".encode()).decode()
            b.t("Authorization: Basic ").pii(cred, cat, "basic_auth")
    elif cat == "url_credentials":
        user, pw = (
            g.pick(FIRST + ["admin", "app", "x-access-token"]),
            g.password().replace("@", "#").replace("/", "_"),
        )
        scheme, host = g.pick(
            [
                ("postgresql", "db.internal:5432/app"),
                ("redis", "cache:6379/0"),
                ("https", "github.com/org/repo.git"),
                ("amqp", "mq:5672/vhost"),
                ("mongodb+srv", "cluster0.example.net/prod"),
            ]
        )
        b.t(f"{ts} INFO  [db] connecting to {scheme}://").pii(f"{user}:{pw}", cat, cat).t(f"@{host}")
    elif cat == "private_key":
        b.t("deploy_key: |\n").pii(g.pem(), cat, cat)


def _neutral_line(g: Gen, b: _Builder, fmt: str, near_miss_rate: float) -> None:
    ts = g.ts()
    if g.r.random() < near_miss_rate:
        b.t(f"{ts} INFO  [check] " + g.near_miss())
        return
    if fmt == "log":
        b.t(
            g.pick(
                [
                    f"{ts} INFO  [api] GET /v1/videos/{g.uuid()} 200 {g.num(1, 900)}ms "
                    f"bytes={g.num(100, 10**6)} req={g.s(16, HEX)}",
                    f"{ts} DEBUG [worker] task tokpulse.ingest_metrics[{g.uuid()}] succeeded in "
                    f"{g.r.random():.4f}s",
                    f"{ts} WARN  [scheduler] job nightly_watchers lagging by {g.num(1, 300)}s (threshold "
                    "60s)",
                    f"{ts} INFO  [llm] model=gpt-4o-mini prompt_tokens={g.num(10, 9000)} "
                    f"completion_tokens={g.num(1, 900)} "
                    f"cost_usd={g.r.random() / 10:.5f}",
                    f"{ts} INFO  [db] pool size=10 checked_out={g.num(0, 10)} host=db.internal:5432 "
                    "dbname=tokpulse",
                    f"{ts} ERROR [ingest] upstream 503 after {g.num(1, 5)} retries; next attempt in "
                    f"{g.num(1, 60)}s",
                    f"{ts} INFO  [metrics] views={g.num(0, 10**7)} likes={g.num(0, 10**6)} "
                    f"ts={g.num(1.6e12, 1.8e12)}",
                ]
            )
        )
    elif fmt == "ci":
        b.t(
            g.pick(
                [
                    "##[group]Run actions/checkout@v4",
                    "Run npm ci",
                    f"added {g.num(100, 2000)} packages in {g.num(5, 90)}s",
                    "npm WARN deprecated inflight@1.0.6: This module is not supported, use lru-cache "
                    f"{g.version()}",
                    f"Step {g.num(1, 12)}/12 : RUN pip install -r requirements.txt",
                    f" ---> Running in {g.s(12, HEX)}",
                    f"PASS src/components/App.test.tsx ({g.num(1, 9)}.{g.num(10, 99)} s)",
                    f"Tests:       {g.num(10, 500)} passed, {g.num(10, 500)} total",
                    f"HEAD is now at {g.s(7, HEX)} Fix flaky test in scheduler",
                    f"Downloading pydantic-{g.version().lstrip('v')}-py3-none-any.whl ({g.num(10, 900)} kB)",
                    f"#{g.num(1, 30)} DONE {g.num(0, 99)}.{g.num(0, 9)}s",
                    "##[endgroup]",
                    "Post job cleanup.",
                ]
            )
        )
    elif fmt == "json":
        b.t(
            f'  {{"id": "{g.uuid()}", "created_at": "{ts}", "views": {g.num(0, 10**7)}, '
            f'"duration_s": {g.r.random() * 600:.2f}, "title": "{g.words(4)}"}},'
        )
    elif fmt == "md":
        b.t(
            g.pick(
                [
                    f"## Release {g.version()}",
                    f"- Fixed {g.words(5)} (#{g.num(100, 9999)})",
                    f"| latency_ms | {g.num(1, 99)} | {g.num(100, 999)} |",
                    "```bash",
                    "```",
                    f"Run `tokpulse redact --json payload.json` before sending {g.words(3)}.",
                    g.words(12) + ".",
                ]
            )
        )
    else:  # env/yaml config
        b.t(
            g.pick(
                [
                    f"LOG_LEVEL={g.pick(['INFO', 'DEBUG'])}",
                    f"WORKERS={g.num(1, 16)}",
                    "  timeout_s: 30",
                    f"  image: ghcr.io/tokpulse/api:{g.version()}",
                    f"PORT={g.num(1024, 65535)}",
                    "  retries: 3",
                    f"FEATURE_FLAGS=insights,{g.words(1)}",
                    "  region: eu-west-1",
                ]
            )
        )


FORMATS = ("log", "ci", "json", "md", "env")


def labelled_corpus(
    n_docs: int = 600, seed: int = 11, pii_rate: float = 0.4, near_miss_rate: float = 0.35
) -> list[Doc]:
    """Documents with gold spans; about `pii_rate` of the lines carry one value and
    `near_miss_rate` of the others are near-misses (deliberately dense: this is a stress set)."""
    g = Gen(seed)
    docs = []
    for _ in range(n_docs):
        fmt = g.pick(FORMATS)
        b = _Builder()
        for _ in range(g.num(6, 16)):
            if g.r.random() < pii_rate:
                _pii_line(g, b, fmt, g.r.choices(CATEGORIES, WEIGHTS)[0])
            else:
                _neutral_line(g, b, fmt, near_miss_rate)
            b.t("\n")
        docs.append(Doc(fmt, b.text(), b.spans))
    return docs


def mixed_corpus(
    size: int = 8 * 1024 * 1024, seed: int = 3, pii_rate: float = 0.03, near_miss_rate: float = 0.1
) -> str:
    """About `size` characters of logs, CI output, JSON, Markdown and config.

    Defaults: 3% of lines carry a PII/credential value and 10% of the rest are near-misses —
    both well above what real ops text has, so the figure is conservative."""
    g = Gen(seed)
    chunks: list[str] = []
    total = 0
    while total < size:
        fmt = g.pick(FORMATS)
        b = _Builder()
        for _ in range(g.num(50, 400)):
            if g.r.random() < pii_rate:
                _pii_line(g, b, fmt, g.r.choices(CATEGORIES, WEIGHTS)[0])
            else:
                _neutral_line(g, b, fmt, near_miss_rate)
            b.t("\n")
        s = b.text()
        chunks.append(s)
        total += len(s)
    return "".join(chunks)
