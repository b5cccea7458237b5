"""Which mapping keys hold sensitive values (`redact_object` replaces those values whole).

A key is split into lower-case words (`apiKey`, `API-KEY`, `api_key` → api, key) and is
sensitive when
- a word is one of password, passwd, passphrase, pwd, secret, secrets, authorization, email,
  phone, telephone, ssn, cookie, credential(s), cvv, cvc, iban;
- a word starts with `card` (card, cardNumber, credit_card, cardholder — not cardinality);
- the *last* word is token, auth or pin (access_token, basic_auth — but not max_tokens,
  token_count or token_type, which this LLM-ops fleet has everywhere);
- two adjacent words are api+key, private+key, access+key, secret+key, client+secret, or the
  joined key is apikey/xapikey/accesskey/privatekey;
- or it matches a configured `privacy.sensitive_keys` entry (compared the same way: the joined
  words or any single word)."""

from __future__ import annotations

import re
from functools import lru_cache

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

_ANY_WORD = frozenset(
    "password passwd passphrase pwd secret secrets authorization email emails phone phones telephone ssn "
    "cookie cookies credential credentials cvv cvc iban".split()
)
_LAST_WORD = frozenset("token auth pin".split())
_PAIRS = frozenset(
    {
        ("api", "key"),
        ("private", "key"),
        ("access", "key"),
        ("secret", "key"),
        ("client", "secret"),
        ("api", "token"),
    }
)
_JOINED = frozenset("apikey xapikey accesskey privatekey apitoken".split())


def split_words(key: str) -> list[str]:
    return [w.lower() for w in _WORDS.findall(key)]


def normalise(key: str) -> str:
    return "".join(split_words(key))


@lru_cache(maxsize=8192)
def _builtin_sensitive(key: str) -> bool:
    words = split_words(key)
    if not words:
        return False
    if "".join(words) in _JOINED or words[-1] in _LAST_WORD:
        return True
    for i, w in enumerate(words):
        if w in _ANY_WORD or (w.startswith("card") and not w.startswith("cardinal")):
            return True
        if i and (words[i - 1], w) in _PAIRS:
            return True
    return False


class KeyMatcher:
    """Decides, with a cache, whether a key is sensitive (built-in rules plus configured ones)."""

    def __init__(self, extra: list[str] | tuple[str, ...] = ()):
        self.extra = frozenset(n for n in (normalise(e) for e in extra) if n)

    @lru_cache(maxsize=8192)  # noqa: B019 - one matcher per cached guard, lives for the process
    def is_sensitive(self, key: str) -> bool:
        if _builtin_sensitive(key):
            return True
        if not self.extra:
            return False
        words = split_words(key)
        return "".join(words) in self.extra or any(w in self.extra for w in words)
