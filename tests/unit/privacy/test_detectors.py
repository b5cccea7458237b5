"""Each detector: values it must redact (with its typed placeholder) and near-misses it must
leave exactly as they are."""

from __future__ import annotations

import base64

import pytest

from tests.unit.privacy.samples import KEYS, PEM, SLACK_WEBHOOK, card, iban, jwt, rnd
from tokpulse.privacy import get_privacy_guard


@pytest.fixture(scope="module")
def guard():
    return get_privacy_guard()


@pytest.fixture(scope="module")
def strict():
    return get_privacy_guard(strict_mode=True)


def check_redacted(g, text: str, secret: str, placeholder: str) -> str:
    out = g.redact(text)
    assert secret not in out, f"{secret!r} survived in {out!r}"
    assert placeholder in out, f"{placeholder} missing in {out!r}"
    return out


def test_spec_example(guard):
    assert guard.redact("Contact john@example.com") == "Contact [EMAIL_REDACTED]"


# ---------------------------------------------------------------------------------------------
# E-mail

EMAILS = [
    "john@example.com",
    "jane.doe+billing@mail.example.co.uk",
    "A.SMITH@ACME-CORP.COM",
    "user_1@sub.domain.io",
    "o'neil@example.org".replace("'", ""),
    "müller@example.de",
    "x@tokpulse.dev",
    "first.last@uni-heidelberg.de",
]


@pytest.mark.parametrize("email", EMAILS)
@pytest.mark.parametrize(
    "tmpl", ["{v}", "Contact {v} today", "<{v}>", '{{"email": "{v}"}}', "user={v},", "mailto:{v}"]
)
def test_email_redacted(guard, email, tmpl):
    out = check_redacted(guard, tmpl.format(v=email), email, "[EMAIL_REDACTED]")
    assert out == tmpl.format(v="[EMAIL_REDACTED]")


def test_email_url_encoded(guard):
    out = guard.redact("GET /unsubscribe?email=jane.doe%40example.com&list=weekly")
    assert out == "GET /unsubscribe?email=[EMAIL_REDACTED]&list=weekly"


@pytest.mark.parametrize(
    "text",
    [
        "uses: actions/checkout@v4",
        "npm i lodash@4.17.21",
        "docker pull nginx@sha256:" + "a" * 64,
        "git@github.com:org/repo.git",
        "icon@2x.png",
        "y = x @ self.weights",
        "@mention in chat",
        "https://abc123@o45.ingest.sentry.io/6",
        "email: [EMAIL_REDACTED]",
    ],
)
def test_email_near_misses(guard, text):
    assert guard.redact(text) == text


# ---------------------------------------------------------------------------------------------
# Phone numbers

PHONES = [
    "+14155552671",
    "+1 415 555 2671",
    "+1-415-555-2671",
    "+1 (415) 555-2671",
    "+1.415.555.2671",
    "(415) 555-2671",
    "415-555-2671",
    "415.555.2671",
    "415 555 2671",
    "1-800-555-0199",
    "+44 20 7946 0958",
    "+44 (0)20 7946 0958",
    "020 7946 0958",
    "07700 900123",
    "0044 20 7946 0958",
    "+49 30 12345678",
    "+49 (0)30 1234567",
    "030 12345678",
    "030/1234567",
    "0151 12345678",
    "+33 6 12 34 56 78",
    "06 12 34 56 78",
    "01.23.45.67.89",
    "+39 02 1234 5678",
    "+34 612 34 56 78",
    "+31 6 12345678",
    "020-1234567",
    "+43 664 1234567",
    "+61 2 9876 5432",
    "+81 3-1234-5678",
]


@pytest.mark.parametrize("phone", PHONES)
def test_phone_redacted(guard, phone):
    out = check_redacted(guard, f"call {phone} now", phone, "[PHONE_REDACTED]")
    assert out == "call [PHONE_REDACTED] now"


def test_phone_by_context(guard):
    assert guard.redact("phone: 4155552671") == "phone: [PHONE_REDACTED]"
    assert guard.redact('"mobile_number": "612345678"') == '"mobile_number": "[PHONE_REDACTED]"'


@pytest.mark.parametrize(
    "text",
    [
        "released 2024-01-15 at 10:23:45",
        "on 15/01/2024 10:30",
        "am 05.01.2024 10:30 Uhr",
        "1.2.3.4",
        "version 10.4.1-rc1",
        "took 1234567 ms",
        "+3.14159265",
        "UTC+01:00",
        "1e+10",
        "(311) 555-2671",
        "ISBN 978-3-16-148410-0",
        "order ORD-2024-000123",
        "id 123e4567-e89b-12d3-a456-426614174000",
        "00231780-8858-4869-a14d-779ff6683044",
        "listening on 0.0.0.0:8080",
        "price 1 299,00 EUR",
        "iban DE53 3312 3520 0200 6320 46 (bad checksum)",
    ],
)
def test_phone_near_misses(guard, text):
    assert guard.redact(text) == text


# ---------------------------------------------------------------------------------------------
# Payment cards

CARDS = {
    "visa": card("4", 16, 1),
    "visa19": card("4", 19, 2),
    "mastercard": card("53", 16, 3),
    "mastercard2": card("2221", 16, 4),
    "amex": card("37", 15, 5),
    "discover": card("6011", 16, 6),
    "jcb": card("3530", 16, 7),
    "diners": card("36", 14, 8),
    "unionpay": card("62", 16, 9),
    "test_visa": "4111111111111111",
    "test_amex": "378282246310005",
}


@pytest.mark.parametrize("name", sorted(CARDS))
def test_card_redacted(guard, name):
    digits = CARDS[name]
    forms = [digits]
    if len(digits) == 16:
        forms += [
            " ".join(digits[i : i + 4] for i in range(0, 16, 4)),
            "-".join(digits[i : i + 4] for i in range(0, 16, 4)),
        ]
    if len(digits) == 15:
        forms += [f"{digits[:4]} {digits[4:10]} {digits[10:]}"]
    for f in forms:
        assert guard.redact(f"card {f}.") == "card [CREDIT_CARD_REDACTED]."


@pytest.mark.parametrize(
    "text",
    [
        "card 4111111111111112",  # Luhn fails
        "n " + card("4", 16, 11)[:-1] + str((int(card("4", 16, 11)[-1]) + 3) % 10),
        "epoch_ms=1716239022123 epoch_ns=1716239022123456789",  # no issuer starts with 1
        "bytes 4398046511104",  # 13 digits: no 13-digit Visa outside strict mode
        "4111 1111-1111 1111",  # mixed separators
        "uuid 41111111-1111-1111-1111-111111111111",
        "value 4111111111111111.5",
        "x=14111111111111111",
    ],
)
def test_card_near_misses(guard, text):
    assert guard.redact(text) == text


def test_card_13_digit_visa_in_strict_mode(guard, strict):
    v13 = card("4", 13, 3)
    assert guard.redact(f"n {v13}") == f"n {v13}"
    assert strict.redact(f"n {v13}") == "n [CREDIT_CARD_REDACTED]"


# ---------------------------------------------------------------------------------------------
# IBAN and SSN

IBANS = [
    "DE89370400440532013000",
    "GB82WEST12345698765432",
    "FR1420041010050500013M02606",
    "NL91ABNA0417164300",
    iban("ES", "21000418450200051332"),
    iban("IT", "X0542811101000000123456"),
    iban("CH", "0076201162385295" + "7"),
]


@pytest.mark.parametrize("value", IBANS)
def test_iban_redacted(guard, value):
    spaced = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    for form in (value, spaced):
        assert guard.redact(f"IBAN {form} EUR") == "IBAN [IBAN_REDACTED] EUR"


@pytest.mark.parametrize(
    "text",
    ["IBAN DE89370400440532013001", "GB82WEST1234569876543", "XX89370400440532013000 x", "AB12CDEF34567890"],
)
def test_iban_near_misses(guard, text):
    assert guard.redact(text) == text


@pytest.mark.parametrize("ssn", ["123-45-6789", "001-01-0001", "899-99-9999", "536-22-1234"])
def test_ssn_redacted(guard, ssn):
    assert guard.redact(f"ssn={ssn};") == "ssn=[SSN_REDACTED];"
    assert guard.redact(f"SSN: {ssn.replace('-', ' ')}") == "SSN: [SSN_REDACTED]"


@pytest.mark.parametrize(
    "text",
    [
        "000-12-3456",
        "666-12-3456",
        "912-12-3456",
        "123-00-4567",
        "123-45-0000",
        "2024-01-15",
        "id 123-45-67890",
    ],
)
def test_ssn_near_misses(guard, text):
    assert guard.redact(text) == text


# ---------------------------------------------------------------------------------------------
# Credentials


@pytest.mark.parametrize("name", sorted(KEYS))
@pytest.mark.parametrize("tmpl", ["{v}", "key {v} here", 'TOKEN="{v}"', '{{"k": "{v}"}}', "x={v}&y=1"])
def test_vendor_keys_redacted(guard, name, tmpl):
    value = KEYS[name]
    out = guard.redact(tmpl.format(v=value))
    assert value not in out
    assert "[API_KEY_REDACTED]" in out


def test_key_placeholder_is_api_key(guard):
    assert (
        guard.redact(f"export GITHUB_TOKEN={KEYS['github_classic']}")
        == "export GITHUB_TOKEN=[API_KEY_REDACTED]"
    )


def test_slack_webhook(guard):
    assert guard.redact(f"url: {SLACK_WEBHOOK}") == "url: [API_KEY_REDACTED]"


def test_jwt(guard):
    token = jwt()
    assert guard.redact(f"session={token}; Path=/") == "session=[JWT_REDACTED]; Path=/"


def test_pem_private_key(guard):
    out = guard.redact(f"key:\n{PEM}\nafter")
    assert out == "key:\n[PRIVATE_KEY_REDACTED]\nafter"
    escaped = PEM.replace("\n", "\\n")  # a PEM inside a JSON string
    assert guard.redact(f'{{"key": "{escaped}"}}') == '{"key": "[PRIVATE_KEY_REDACTED]"}'
    truncated = PEM.split("-----END")[0]
    assert "MII" not in guard.redact(truncated) and guard.redact(truncated).startswith(
        "[PRIVATE_KEY_REDACTED]"
    )


def test_authorization_headers(guard):
    tok = rnd(40, seed=50)
    assert guard.redact(f"Authorization: Bearer {tok}") == "Authorization: Bearer [API_KEY_REDACTED]"
    assert guard.redact(f"-H 'authorization: token {tok}'") == "-H 'authorization: token [API_KEY_REDACTED]'"
    basic = base64.b64encode(b"alice:s3cret-Pass").decode()
    assert guard.redact(f"Authorization: Basic {basic}") == "Authorization: Basic [SECRET_REDACTED]"
    assert (
        guard.redact(f'{{"Authorization": "Bearer {tok}"}}')
        == '{"Authorization": "Bearer [API_KEY_REDACTED]"}'
    )
    assert guard.redact(f"curl -H 'Bearer {tok}'") == "curl -H 'Bearer [API_KEY_REDACTED]'"


@pytest.mark.parametrize(
    "url,expected",
    [
        (
            "postgresql://app:s3cr3t@db:5432/tokpulse",
            "postgresql://[URL_CREDENTIALS_REDACTED]@db:5432/tokpulse",
        ),
        ("redis://:hunter22@cache:6379/0", "redis://[URL_CREDENTIALS_REDACTED]@cache:6379/0"),
        (
            "mongodb+srv://bob:p#ss?w0rd@cluster0.example.net/db",
            "mongodb+srv://[URL_CREDENTIALS_REDACTED]@cluster0.example.net/db",
        ),
        (
            "https://x-access-token:" + KEYS["github_app"] + "@github.com/o/r.git",
            "https://[URL_CREDENTIALS_REDACTED]@github.com/o/r.git",
        ),
    ],
)
def test_url_credentials(guard, url, expected):
    assert guard.redact(url) == expected


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://app:***@db:5432/x",
        "postgres://user:${DB_PASSWORD}@db/x",
        "redis://cache:6379/0",
        "https://user@example.com/path",
        "postgres://u:<password>@host/db",
    ],
)
def test_url_credentials_near_misses(guard, text):
    assert guard.redact(text) == text


@pytest.mark.parametrize(
    "text,expected",
    [
        ("password=hunter22", "password=[SECRET_REDACTED]"),
        ("DB_PASSWORD=Tr0ub4dor&3", "DB_PASSWORD=[SECRET_REDACTED]"),
        ('"client_secret": "Fj0TPkQslNNx"', '"client_secret": "[SECRET_REDACTED]"'),
        ("  api_token: a8f5f167f44f4964e6c998dee827110c", "  api_token: [SECRET_REDACTED]"),
        ("SECRET_KEY = 'django-insecure-9x#k2'", "SECRET_KEY = '[SECRET_REDACTED]'"),
        ("password: correcthorsebatterystaple", "password: [SECRET_REDACTED]"),
        ('{\\"password\\": \\"hunter22\\"}', '{\\"password\\": \\"[SECRET_REDACTED]\\"}'),
        ("spring.datasource.password=S3cret!", "spring.datasource.password=[SECRET_REDACTED]"),
        (
            "./deploy.sh --db-password S3cret-99 --verbose",
            "./deploy.sh --db-password [SECRET_REDACTED] --verbose",
        ),
        ("aws_secret_access_key = " + rnd(40, seed=60), "aws_secret_access_key = [SECRET_REDACTED]"),
    ],
)
def test_assigned_secrets(guard, text, expected):
    assert guard.redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "OPENAI_API_KEY=sk-xxxxxxxxxxxxxxxxxxxxxxxx",
        "api_key: <YOUR_KEY>",
        "password: ${DB_PASSWORD}",
        "token: $GITHUB_TOKEN",
        "password = os.getenv('DB_PASSWORD')",
        "token = self.token",
        "password=password",
        "password: changeme",
        "password: required",
        "password: ********",
        "PWD=/home/ci/work",
        "OLDPWD=/tmp",
        "max_tokens=512 prompt_tokens=1234 token_count=7",
        "token_type: Bearer",
        "tokenizer=cl100k_base",
        "if password == 'x':",
        "PASSWORD_FILE=/run/secrets/db",
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        "secret: [REDACTED]",
        "Authorization: Bearer <token>",
        "Bearer token expired",
        "Basic authentication enabled",
        "sk-proj-your-key-here-xxxxxxxxxxxx",
        "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "task-succeeded-1234567890abcdef",
        "sk-dashboard-service-deployment-v2",
    ],
)
def test_secret_near_misses(guard, text):
    assert guard.redact(text) == text


# ---------------------------------------------------------------------------------------------
# The other near-misses named in the issue, all in one realistic log chunk.

NEAR_MISSES = """\
2024-05-01T12:34:56.789Z INFO  [api] GET /v1/videos/8f14e45f-ceea-467f-a0a6-0c6d5e9b1c2a 200 23ms bytes=48213
2024-05-01T12:34:57.001Z DEBUG [worker] task tokpulse.ingest_metrics[3f2a9d1c-4b5e-4f70-8192-a3b4c5d6e7f8] ok
HEAD is now at 3f2a9d1 Fix flaky test; commit 3f2a9d1c4b5e6f708192a3b4c5d6e7f8091a2b3c
pydantic-2.6.1-py3-none-any.whl v10.4.1-rc1 1.2.3 release 2024.05.01
order ORD-2024-000123 / order #100234567 / invoice INV-0042
listening on 0.0.0.0:8080, db.internal:5432, redis:6379
http_requests_total{code="200",path="/v1"} 1027 1716239022123
process_resident_memory_bytes 4398046511104
latency_ms p50=23 p99=187 rate=1234.5678
sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7
Run `tokpulse redact --json payload.json`; see <YOUR_KEY> and sk-xxxx in docs.
"""


def test_near_miss_log_chunk_untouched(guard):
    assert guard.redact(NEAR_MISSES) == NEAR_MISSES
    assert guard.scan(NEAR_MISSES).total == 0


# ---------------------------------------------------------------------------------------------
# Strict mode


def test_strict_mode_adds_ip_addresses(guard, strict):
    text = "client 203.0.113.42 via 2001:db8::ff00:42:8329 and fe80::1"
    assert guard.redact(text) == text
    assert (
        strict.redact(text)
        == "client [IP_ADDRESS_REDACTED] via [IP_ADDRESS_REDACTED] and [IP_ADDRESS_REDACTED]"
    )


@pytest.mark.parametrize(
    "text",
    ["at 10:23:45.123", "mac 00:1a:2b:3c:4d:5e", "std::vector<int>", "version 1.2.3.4", "v1.2.3.4", "1.2.3"],
)
def test_strict_mode_ip_near_misses(strict, text):
    assert strict.redact(text) == text


def test_strict_mode_bare_national_number(guard, strict):
    assert guard.redact("ref 07700900123") == "ref 07700900123"
    assert strict.redact("ref 07700900123") == "ref [PHONE_REDACTED]"


def test_strict_mode_any_tld(guard, strict):
    assert guard.redact("a.b@host.weirdtld") == "a.b@host.weirdtld"
    assert strict.redact("a.b@host.weirdtld") == "[EMAIL_REDACTED]"
