"""Deterministic, random-looking sample values for the privacy tests (real keys are random;
sequential test strings like `abcdef123456` are treated as placeholders on purpose)."""

from __future__ import annotations

import base64
import json
import random
import string

ALNUM = string.ascii_letters + string.digits
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"


def rnd(n: int, alphabet: str = ALNUM, seed: int = 0) -> str:
    r = random.Random(f"{seed}-{n}-{alphabet}")
    while True:
        s = "".join(r.choice(alphabet) for _ in range(n))
        if alphabet != ALNUM or (
            any(c.isdigit() for c in s) and any(c.isupper() for c in s) and any(c.islower() for c in s)
        ):
            return s


def luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def card(prefix: str, length: int, seed: int = 0) -> str:
    r = random.Random(seed)
    return luhn_complete(prefix + "".join(r.choice(string.digits) for _ in range(length - len(prefix) - 1)))


def iban(country: str, bban: str) -> str:
    num = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{country}{98 - num % 97:02d}{bban}"


def jwt(seed: int = 0) -> str:
    def enc(d: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    header, payload = enc({"alg": "HS256", "typ": "JWT"}), enc({"sub": "12345", "iat": 1716239022})
    return f"{header}.{payload}.{rnd(43, B64URL, seed)}"


KEYS: dict[str, str] = {
    "openai_legacy": "sk-" + rnd(20, seed=1) + "T3BlbkFJ" + rnd(20, seed=2),
    "openai_project": "sk-proj-" + rnd(156, B64URL, 3),
    "openai_service_account": "sk-svcacct-" + rnd(120, B64URL, 4),
    "openai_admin": "sk-admin-" + rnd(100, B64URL, 5),
    "anthropic": "sk-ant-api03-" + rnd(93, B64URL, 6) + "AA",
    "anthropic_admin": "sk-ant-admin01-" + rnd(93, B64URL, 7) + "AA",
    "github_classic": "ghp_" + rnd(36, seed=8),
    "github_oauth": "gho_" + rnd(36, seed=9),
    "github_user_to_server": "ghu_" + rnd(36, seed=10),
    "github_app": "ghs_" + rnd(36, seed=11),
    "github_refresh": "ghr_" + rnd(76, seed=12),
    "github_fine_grained": "github_pat_" + rnd(22, seed=13) + "_" + rnd(59, seed=14),
    "gitlab_pat": "glpat-" + rnd(20, B64URL, 15),
    "gitlab_runner": "glrt-" + rnd(20, B64URL, 16),
    "aws_access_key_id": "AKIA" + rnd(16, string.ascii_uppercase + "234567", 17),
    "aws_sts_key_id": "ASIA" + rnd(16, string.ascii_uppercase + "234567", 18),
    "google_api_key": "AIza" + rnd(35, B64URL, 19),
    "google_oauth_secret": "GOCSPX-" + rnd(28, B64URL, 20),
    "stripe_live": "sk_live_" + rnd(99, seed=21),
    "stripe_restricted": "rk_live_" + rnd(24, seed=22),
    "stripe_webhook": "whsec_" + rnd(32, seed=23),
    "slack_bot": "xoxb-"
    + rnd(12, string.digits, 24)
    + "-"
    + rnd(13, string.digits, 25)
    + "-"
    + rnd(24, seed=26),
    "slack_user": "xoxp-"
    + rnd(12, string.digits, 27)
    + "-"
    + rnd(12, string.digits, 28)
    + "-"
    + rnd(13, string.digits, 29)
    + "-"
    + rnd(32, HEX, 30),
    "slack_app": "xapp-1-A"
    + rnd(10, string.ascii_uppercase + string.digits, 31)
    + "-"
    + rnd(13, string.digits, 32)
    + "-"
    + rnd(64, HEX, 33),
    "twilio_account_sid": "AC" + rnd(32, HEX, 34),
    "twilio_api_key": "SK" + rnd(32, HEX, 35),
    "sendgrid": "SG." + rnd(22, B64URL, 36) + "." + rnd(43, B64URL, 37),
    "npm": "npm_" + rnd(36, seed=38),
    "pypi": "pypi-AgEIcHlwaS5vcmc" + rnd(150, B64URL, 39),
    "huggingface": "hf_" + rnd(34, string.ascii_letters, 40),
}

_SLACK_IDS = "ABCDEFGHJK0123456789"
SLACK_WEBHOOK = (
    "https://hooks.slack.com/services/"
    f"T{rnd(8, _SLACK_IDS, 41)}/B{rnd(10, _SLACK_IDS, 42)}/{rnd(24, seed=43)}"
)
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + "\n".join(rnd(64, ALNUM + "+/", 44 + i) for i in range(6))
    + "\n-----END RSA PRIVATE KEY-----"
)
