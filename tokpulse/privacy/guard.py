"""The privacy guard: `get_privacy_guard()`, `PrivacyGuard`, `Findings`, reversible sessions.

Mirrors the spec's `getPrivacyGuard({strictMode})`, `redact` and `redactObject`:

    guard = get_privacy_guard(strict_mode=True)
    guard.redact("Contact john@example.com")          # 'Contact [EMAIL_REDACTED]'
    guard.redact_object({"email": "user@test.com", "password": "secret123"})
    # {'email': '[REDACTED]', 'password': '[REDACTED]'}

How a text is redacted: it is encoded to UTF-8, Hyperscan finds every trigger in one pass,
each detector's exact regex runs on a window around its triggers, the candidates are validated
(Luhn, mod-97, ranges, context, entropy), overlaps are resolved by priority (a PEM block beats
the base64 inside it, URL credentials beat the e-mail-looking `pass@host`), and the survivors
are replaced. Text with nothing found is returned as the same object, untouched."""

from __future__ import annotations

import json
import re
import threading
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from fractions import Fraction
from typing import Any, NamedTuple
from uuid import UUID

from tokpulse.privacy import validators as v
from tokpulse.privacy.detectors import Detector, builtin_detectors
from tokpulse.privacy.errors import PrivacyInputError, too_large
from tokpulse.privacy.keys import KeyMatcher
from tokpulse.privacy.scanner import Scanner, Trigger
from tokpulse.settings import ConfigError, Privacy

REDACTED = "[REDACTED]"
_SENSITIVE = "REDACTED"  # kind used for values under sensitive keys
_CUSTOM_PRIORITY = 560  # above the PII detectors, below the credential families
_MARGIN = 16  # bytes of real text the exact regex may look at past a window (lookaheads)
_PLACEHOLDER_FORM = re.compile(r"^(?:\[[^\s\[\]]{1,80}\]|<[^\s<>]{1,80}>|\{[^\s{}]{1,80}\})$")
_RESTORE_RX = re.compile(r"\[[A-Z][A-Z0-9_]*_[1-9][0-9]*\]")
_PASSTHROUGH = (
    bool,
    type(None),
    float,
    complex,
    Decimal,
    Fraction,
    datetime,
    date,
    time,
    timedelta,
    UUID,
    Enum,
)

Replace = Callable[[str, bytes], bytes]
Cand = tuple[int, int, int, str, str]  # start, end (bytes), priority, kind, detector name


@dataclass
class Findings:
    """What was found: counts per type (`email`, `phone`, `api_key`, …) and per detector.

    Never holds the values themselves, so it is safe to log and to store for audits."""

    by_type: Counter[str] = field(default_factory=Counter)
    by_detector: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, detector: str) -> None:
        self.by_type["sensitive_key" if kind == _SENSITIVE else kind.lower()] += 1
        self.by_detector[detector] += 1

    def merge(self, other: Findings) -> Findings:
        self.by_type.update(other.by_type)
        self.by_detector.update(other.by_detector)
        return self

    @property
    def total(self) -> int:
        return sum(self.by_type.values())

    def __bool__(self) -> bool:
        return self.total > 0

    def as_dict(self) -> dict[str, int]:
        """Counts per type, e.g. {'email': 2, 'api_key': 1}."""
        return dict(sorted(self.by_type.items()))


class Located(NamedTuple):
    start: int
    end: int
    type: str  # email, phone, api_key, … (as in Findings)
    detector: str


@dataclass(frozen=True)
class CustomPattern:
    index: int
    name: str
    kind: str
    regex: re.Pattern[str]
    placeholder: str


def validate_custom_patterns(config: Privacy) -> list[CustomPattern]:
    """Check `privacy.custom_patterns`; raise `ConfigError` naming the first bad one.

    `get_privacy_guard()` calls this itself; calling it at start-up reports a bad pattern
    before any work starts. Any regex Python's `re` accepts is accepted (Hyperscan only
    prefilters custom patterns, and a pattern it can't take simply always runs)."""
    out = []
    for i, cp in enumerate(config.custom_patterns):
        key = f"agent_config.json: privacy.custom_patterns[{i}]"
        try:
            rx = re.compile(cp.regex)
        except re.error as exc:
            raise ConfigError(key, f"custom pattern {cp.name!r} is not a valid regex: {exc}") from None
        if rx.search("") is not None:
            raise ConfigError(
                key, f"custom pattern {cp.name!r} can match an empty string; make it match text"
            )
        kind = cp.name.upper()
        placeholder = cp.placeholder if cp.placeholder is not None else f"[{kind}_REDACTED]"
        if not _PLACEHOLDER_FORM.match(placeholder):
            raise ConfigError(
                key,
                f"placeholder {placeholder!r} of {cp.name!r} must look like [NAME], <NAME> or {{NAME}} "
                "(no spaces, at most 80 characters)",
            )
        if rx.search(placeholder):
            raise ConfigError(
                key, f"placeholder {placeholder!r} is matched by the pattern {cp.name!r} itself"
            )
        out.append(CustomPattern(i, cp.name, kind, rx, placeholder))
    return out


@dataclass(slots=True)
class _Frame:
    src: Any
    it: Any
    out: Any
    sens: bool
    kind: str  # dict | list | tuple | set
    key: Any = None  # current key/index, for error paths
    n: int = -1

    def path_part(self) -> str:
        if self.kind != "dict":
            return f"[{self.n}]"
        k = self.key
        if isinstance(k, str) and k.isidentifier():
            return f".{k}"
        return f"[{json.dumps(k, ensure_ascii=False, default=str)}]"


_PUSHED = object()
_DONE = object()


class PrivacyGuard:
    """Redacts PII and credentials from text and from JSON-like objects. Thread-safe.

    Get one with `get_privacy_guard()` (cached per configuration; the scanner is compiled once
    per process)."""

    def __init__(self, strict_mode: bool = False, config: Privacy | None = None):
        config = config if config is not None else Privacy()
        self.config = config
        self.strict = bool(strict_mode or config.strict_mode)
        self.max_input_bytes = config.max_input_bytes
        self.max_depth = config.max_depth
        self._keys = KeyMatcher(config.sensitive_keys)
        self._customs = validate_custom_patterns(config)

        dets: list[Detector] = list(builtin_detectors(self.strict))
        for c in self._customs:  # configured placeholders are protected like ours
            lit = re.escape(c.placeholder.encode())
            dets.append(
                Detector(f"placeholder_{c.name}", "", (lit,), re.compile(lit), len(lit) + 2, 2, None, 10_000)
            )
        self._dets = dets
        triggers = [Trigger(p, i, d.caseless) for i, d in enumerate(dets) for p in d.triggers]
        triggers += [
            Trigger(c.regex.pattern.encode("utf-8"), len(dets) + j, prefilter=True)
            for j, c in enumerate(self._customs)
        ]
        self._target = [t.target for t in triggers]
        self._scanner = Scanner(triggers)
        self._placeholders: dict[str, bytes] = {
            d.kind: f"[{d.kind}_REDACTED]".encode() for d in dets if d.kind
        }
        self._placeholders[_SENSITIVE] = REDACTED.encode()
        for c in self._customs:
            self._placeholders[c.kind] = c.placeholder.encode("utf-8")

    @property
    def engine(self) -> str:
        """`hyperscan`, or `re` when the slow fallback is in use."""
        return self._scanner.engine

    def __repr__(self) -> str:
        return (
            f"PrivacyGuard(strict={self.strict}, custom_patterns={len(self._customs)}, engine={self.engine})"
        )

    # -- text ----------------------------------------------------------------------------------
    def redact(self, text: str) -> str:
        """The text with every finding replaced by its typed placeholder (`[EMAIL_REDACTED]`…).

        `bytes` are accepted too and decoded as UTF-8 with undecodable bytes replaced."""
        return self._redact_text(text, self._replace, None)

    def redact_with_findings(self, text: str) -> tuple[str, Findings]:
        findings = Findings()
        return self._redact_text(text, self._replace, findings), findings

    def scan(self, text: str) -> Findings:
        """Counts of what `redact` would replace, per type (the values are not kept)."""
        findings = Findings()
        text, data, clean = self._encode(text)
        for c in self._find(text, data, clean):
            if c[3]:
                findings.add(c[3], c[4])
        return findings

    def locate(self, text: str) -> list[Located]:
        """Where `redact` would replace, as character offsets into `text` (for tooling and the
        benchmark; callers that only need counts should use `scan`)."""
        text, data, clean = self._encode(text)
        found = [c for c in self._find(text, data, clean) if c[3]]
        if len(data) == len(text):
            return [Located(s, e, k.lower(), d) for s, e, _p, k, d in found]
        offsets = sorted({o for c in found for o in (c[0], c[1])})
        to_char, pb, pc = {}, 0, 0
        for o in offsets:
            pc += len(data[pb:o].decode("utf-8", "surrogatepass"))
            pb = o
            to_char[o] = pc
        return [Located(to_char[s], to_char[e], k.lower(), d) for s, e, _p, k, d in found]

    def _replace(self, kind: str, value: bytes) -> bytes:
        return self._placeholders[kind]

    def _encode(self, text: Any) -> tuple[str, bytes, bool]:
        if isinstance(text, bytes | bytearray | memoryview):
            if len(text) > self.max_input_bytes:
                raise too_large(len(text), self.max_input_bytes)
            text = bytes(text).decode("utf-8", "replace")
        elif not isinstance(text, str):
            raise PrivacyInputError(f"redact expects text (str), got {type(text).__name__}")
        try:
            data, clean = text.encode("utf-8"), True
        except UnicodeEncodeError:  # lone surrogates, e.g. from json.loads('"\\ud800"')
            data, clean = text.encode("utf-8", "surrogatepass"), False
        if len(data) > self.max_input_bytes:
            raise too_large(len(data), self.max_input_bytes)
        return text, data, clean

    def _redact_text(self, text: Any, replace: Replace, findings: Findings | None) -> str:
        text, data, clean = self._encode(text)
        chosen = self._find(text, data, clean)
        if not chosen:
            return text
        ascii_text = len(data) == len(text)  # offsets are the same in str and bytes
        parts: list = []
        pos = 0
        for s, e, _prio, kind, name in chosen:
            if not kind:
                continue  # a protected placeholder
            ph = replace(kind, data[s:e])
            if ascii_text:
                parts.append(text[pos:s])
                parts.append(ph.decode("utf-8"))
            else:
                parts.append(data[pos:s])
                parts.append(ph)
            pos = e
            if findings is not None:
                findings.add(kind, name)
        if not parts:
            return text
        if ascii_text:
            parts.append(text[pos:])
            return "".join(parts)
        parts.append(data[pos:])
        out = b"".join(parts)
        try:
            return out.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:  # pragma: no cover - matches start and end on ASCII bytes
            return out.decode("utf-8", "replace")

    def _find(self, text: str, data: bytes, clean: bool) -> list[Cand]:
        """The replacements for `data`: candidates from every detector, validated, with the
        overlaps resolved (see `_select`)."""
        hits = self._scanner.scan(data)
        if not hits:
            return []
        target = self._target
        per: dict[int, list[int]] = {}
        for tid, to in hits:
            t = target[tid]
            lst = per.get(t)
            if lst is None:
                per[t] = [to]
            else:
                lst.append(to)
        n = len(data)
        ndet = len(self._dets)
        strict = self.strict
        cands: list[Cand] = []
        # Triggers skipped because an accepted match of the same detector already covers them:
        # (detector, trigger end, match start, the covering candidate). Should that candidate
        # lose to another detector's, they are looked at again (else a second pass could find
        # what the first one hid, breaking idempotence).
        deferred: list[tuple[Detector, int, int, Cand]] = []
        for t, tos in per.items():
            if t >= ndet:
                continue
            det = self._dets[t]
            tos.sort()
            if det.finder is not None:
                prev, floor, cover = -1, -1, None
                for to in tos:
                    if to == prev:
                        continue
                    prev = to
                    if to <= floor:
                        deferred.append((det, to, -1, cover))  # type: ignore[arg-type]
                        continue
                    for s, e in det.finder(data, to, strict):
                        cover = (s, e, det.priority, det.kind, det.name)
                        cands.append(cover)
                        floor = e
                continue
            # `floor`: end of the last accepted match; `tried`: every match start before it
            # has been looked at already (so overlapping windows don't repeat the work).
            floor, tried, cover_start, cover = 0, 0, 0, None
            for to in tos:
                if to <= floor:  # inside the last accepted match (finditer's non-overlap rule)
                    deferred.append((det, to, cover_start, cover))  # type: ignore[arg-type]
                    continue
                found, tried = self._search(det, data, n, strict, to, tried, cands)
                if found is not None:
                    floor, cover_start, cover = found
        if self._customs:
            run = [c for j, c in enumerate(self._customs) if not clean or ndet + j in per]
            if run:
                cands.extend(self._find_custom(text, data, run))
        chosen = self._select(cands)
        if deferred:
            kept = {id(c) for c in chosen}
            extra: list[Cand] = []
            for det, to, start, cover in deferred:
                if id(cover) in kept:
                    continue
                if det.finder is not None:
                    extra.extend(
                        (s, e, det.priority, det.kind, det.name) for s, e in det.finder(data, to, strict)
                    )
                else:
                    self._search(det, data, n, strict, to, start + 1, extra)
            if extra:
                chosen = self._select(chosen + extra)
        return chosen

    @staticmethod
    def _search(
        det: Detector, data: bytes, n: int, strict: bool, to: int, lo_min: int, out: list[Cand]
    ) -> tuple[tuple[int, int, Cand] | None, int]:
        """Run one detector's exact regex for the trigger ending at `to`, trying match starts
        from `lo_min` on; append what passes its check to `out`. Returns ((match end, match
        start, candidate) of the last accepted match or None, the first start not yet tried)."""
        rx, check = det.regex, det.check
        lo = max(lo_min, to - det.before)
        limit = to + det.after
        endpos = min(n, limit + _MARGIN)
        result = None
        while lo <= to:
            m = rx.search(data, lo, endpos)
            # A match must contain the trigger (so start before its end) and must not reach
            # into the margin, where the window may have cut it.
            if m is None or m.start() > to or (m.end() > limit and endpos < n):
                return result, max(lo_min, to + 1 if m is None or m.start() > to else lo)
            res = check(m, data, strict) if check is not None else True
            if res:
                kind = det.kind
                if res is True:
                    s, e = det.span(m)
                elif isinstance(res, str):
                    s, e = det.span(m)
                    kind = res
                else:
                    s, e = res
                if e > s:
                    cand = (s, e, det.priority, kind, det.name)
                    out.append(cand)
                    result = (m.end(), m.start(), cand)
            # A rejected match may hide a valid one starting inside it: look again from its
            # second character; an accepted one is passed over whole.
            lo = m.end() if res else m.start() + 1
            if m.end() >= to:
                break
        return result, lo

    @staticmethod
    def _find_custom(text: str, data: bytes, customs: list[CustomPattern]) -> list[Cand]:
        spans = [
            (m.start(), m.end(), c) for c in customs for m in c.regex.finditer(text) if m.end() > m.start()
        ]
        if len(data) != len(text) and spans:
            # Character offsets to UTF-8 byte offsets, in one pass over the sorted offsets.
            offsets = sorted({o for s, e, _ in spans for o in (s, e)})
            to_byte, prev_c, prev_b = {}, 0, 0
            for o in offsets:
                prev_b += len(text[prev_c:o].encode("utf-8", "surrogatepass"))
                prev_c = o
                to_byte[o] = prev_b
            spans = [(to_byte[s], to_byte[e], c) for s, e, c in spans]
        return [(s, e, _CUSTOM_PRIORITY, c.kind, c.name) for s, e, c in spans]

    @staticmethod
    def _select(cands: list[Cand]) -> list[Cand]:
        """Non-overlapping candidates, in text order. Where candidates overlap, the higher
        priority wins, then the longer one. Most candidates overlap nothing, so the text is
        swept once and only the overlapping clusters are resolved."""
        if len(cands) <= 1:
            return cands
        cands.sort()
        out: list[Cand] = []
        i, n = 0, len(cands)
        while i < n:
            j, end = i + 1, cands[i][1]
            while j < n and cands[j][0] < end:
                end = max(end, cands[j][1])
                j += 1
            if j == i + 1:
                out.append(cands[i])
            else:
                out.extend(PrivacyGuard._resolve(cands[i:j]))
            i = j
        return out

    @staticmethod
    def _resolve(cluster: list[Cand]) -> list[Cand]:
        """Overlapping candidates: highest priority first, then the longest; O(k log k)."""
        starts: list[int] = []
        ends: list[int] = []
        chosen: list[Cand] = []
        for c in sorted(cluster, key=lambda c: (-c[2], c[0] - c[1], c[0])):
            s, e = c[0], c[1]
            i = bisect_left(starts, s)
            if (i and ends[i - 1] > s) or (i < len(starts) and starts[i] < e):
                continue
            starts.insert(i, s)
            ends.insert(i, e)
            chosen.insert(i, c)
        return chosen

    # -- objects -------------------------------------------------------------------------------
    def redact_object(self, obj: Any, *, findings: Findings | None = None, json_only: bool = False) -> Any:
        """A redacted copy of `obj` (the input is never mutated).

        Dicts, lists, tuples (kept as tuples, named tuples too) and sets are walked; values
        under sensitive keys (see `tokpulse.privacy.keys`) become "[REDACTED]" (None and booleans
        are kept); every other string — dict keys included — goes through `redact`; integers
        that are valid card numbers become "[CREDIT_CARD_REDACTED]"; other numbers, dates, UUIDs
        and enums are returned as they are. Mappings come back as plain dicts; bytes come back
        as redacted bytes. With `json_only=True` (the jobs) anything that isn't
        str/int/float/bool/None/list/tuple/dict-with-str-keys is refused."""
        return self._walk(obj, self._replace, findings, json_only)

    def _walk(self, root: Any, replace: Replace, findings: Findings | None, json_only: bool) -> Any:
        stack: list[_Frame] = []
        on_path: set[int] = set()
        budget = [0]

        def path() -> str:
            return "$" + "".join(f.path_part() for f in stack)

        def text(s: str) -> str:
            budget[0] += len(s)
            if budget[0] > self.max_input_bytes:
                raise too_large(budget[0], self.max_input_bytes)
            return self._redact_text(s, replace, findings)

        def sensitive(value: Any) -> Any:
            if findings is not None:
                findings.add(_SENSITIVE, "sensitive_key")
            raw = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")
            return replace(_SENSITIVE, raw).decode("utf-8")

        def enter(value: Any, sens: bool) -> Any:
            if isinstance(value, str):
                return sensitive(value) if sens else text(value)
            if isinstance(value, bool) or value is None:
                return value
            if isinstance(value, int):
                if sens:
                    return sensitive(value)
                if 10**12 <= abs(value) < 10**19 and v.card_ok(str(abs(value)).encode()):
                    if findings is not None:
                        findings.add("CREDIT_CARD", "credit_card")
                    return replace("CREDIT_CARD", str(value).encode()).decode("utf-8")
                return value
            if isinstance(value, float):
                return sensitive(value) if sens else value
            if isinstance(value, dict):
                kind, it, out = "dict", iter(value.items()), {}
            elif isinstance(value, list):
                kind, it, out = "list", iter(value), []
            elif isinstance(value, tuple):
                kind, it, out = "tuple", iter(value), []
            elif json_only:
                raise PrivacyInputError(f"value of type {type(value).__name__} at {path()} is not JSON")
            elif isinstance(value, set | frozenset):
                kind, it, out = "set", iter(value), []
            elif isinstance(value, bytes | bytearray):
                if sens:
                    return type(value)(sensitive(b"").encode())
                return type(value)(
                    text(bytes(value).decode("utf-8", "replace")).encode("utf-8", "surrogatepass")
                )
            elif isinstance(value, _PASSTHROUGH):
                return sensitive(value) if sens and not isinstance(value, bool | type(None)) else value
            else:
                raise PrivacyInputError(
                    f"value of type {type(value).__name__} at {path()} is not supported "
                    "(pass dicts, lists, tuples, sets, strings, numbers or bytes)"
                )
            if len(stack) >= self.max_depth:
                raise PrivacyInputError(f"nesting deeper than {self.max_depth} levels (privacy.max_depth)")
            if id(value) in on_path:
                raise PrivacyInputError(f"cycle detected at {path()}")
            on_path.add(id(value))
            stack.append(_Frame(value, it, out, sens, kind))
            return _PUSHED

        result = enter(root, False)
        while stack:
            top = stack[-1]
            if result is not _PUSHED:
                if top.kind == "dict":
                    top.out[top.key] = result
                else:
                    top.out.append(result)
            nxt = next(top.it, _DONE)
            if nxt is _DONE:
                stack.pop()
                on_path.discard(id(top.src))
                result = self._finish(top)
                continue
            top.n += 1
            if top.kind == "dict":
                k, val = nxt
                sens = top.sens
                if isinstance(k, str):
                    sens = sens or self._keys.is_sensitive(k)
                    nk = self._redact_text(k, replace, findings)
                    if nk != k and nk in top.out:
                        i = 2
                        while f"{nk}#{i}" in top.out:
                            i += 1
                        nk = f"{nk}#{i}"
                    top.key = nk
                elif json_only:
                    top.key = k
                    raise PrivacyInputError(f"key of type {type(k).__name__} at {path()} is not a string")
                else:
                    top.key = k
                result = enter(val, sens)
            else:
                result = enter(nxt, top.sens)
        return result

    @staticmethod
    def _finish(f: _Frame) -> Any:
        if f.kind in ("dict", "list"):
            return f.out
        if f.kind == "set":
            return type(f.src)(f.out) if type(f.src) in (set, frozenset) else set(f.out)
        if hasattr(f.src, "_fields"):  # a named tuple
            return type(f.src)(*f.out)
        return tuple(f.out)

    # -- reversible ----------------------------------------------------------------------------
    def reversible(self) -> ReversibleSession:
        """A session for LLM round trips: `[EMAIL_1]`-style placeholders that `restore` undoes."""
        return ReversibleSession(self)


class ReversibleSession:
    """Numbered placeholders per distinct value (`[EMAIL_1]`, `[API_KEY_2]`), restorable.

    The mapping lives only in this object's memory: it is never logged, pickled or returned
    (`repr` shows counts only). Sensitive-key values become `[REDACTED_n]`."""

    def __init__(self, guard: PrivacyGuard):
        self._guard = guard
        self._by_value: dict[tuple[str, bytes], bytes] = {}
        self._by_placeholder: dict[str, str] = {}
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ReversibleSession(placeholders={len(self._by_placeholder)})"

    def __reduce__(self):  # never let the mapping leave the process by accident
        raise TypeError("a ReversibleSession holds the original values and cannot be pickled")

    def _replace(self, kind: str, value: bytes) -> bytes:
        with self._lock:
            ph = self._by_value.get((kind, value))
            if ph is None:
                self._counts[kind] += 1
                label = f"[{kind}_{self._counts[kind]}]"
                ph = label.encode()
                self._by_value[(kind, value)] = ph
                self._by_placeholder[label] = value.decode("utf-8", "surrogatepass")
            return ph

    def redact(self, text: str) -> str:
        return self._guard._redact_text(text, self._replace, None)

    def redact_with_findings(self, text: str) -> tuple[str, Findings]:
        findings = Findings()
        return self._guard._redact_text(text, self._replace, findings), findings

    def redact_object(self, obj: Any) -> Any:
        return self._guard._walk(obj, self._replace, None, False)

    def restore(self, text: str) -> str:
        """Put the original values back wherever this session's placeholders appear."""
        if "[" not in text:
            return text
        return _RESTORE_RX.sub(lambda m: self._by_placeholder.get(m.group(0), m.group(0)), text)

    def restore_object(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.restore(obj)
        if isinstance(obj, dict):
            return {self.restore_object(k): self.restore_object(x) for k, x in obj.items()}
        if isinstance(obj, list | tuple):
            return (
                type(obj)(self.restore_object(x) for x in obj)
                if type(obj) in (list, tuple)
                else [self.restore_object(x) for x in obj]
            )
        return obj


_CACHE: dict[tuple[bool, str], PrivacyGuard] = {}
_CACHE_LOCK = threading.Lock()


def get_privacy_guard(strict_mode: bool = False, config: Privacy | None = None) -> PrivacyGuard:
    """The process-wide guard for this mode and configuration (compiled once, then cached).

    Strict mode (the argument or `privacy.strict_mode`) adds the lower-confidence detectors:
    IP addresses, bare national phone numbers, any-TLD e-mails, 13-digit Visa, unknown-country
    IBANs. Raises `ConfigError` for a bad custom pattern."""
    cfg = config if config is not None else Privacy()
    key = (bool(strict_mode or cfg.strict_mode), cfg.model_dump_json())
    guard = _CACHE.get(key)
    if guard is None:
        with _CACHE_LOCK:
            guard = _CACHE.get(key)
            if guard is None:
                guard = _CACHE[key] = PrivacyGuard(key[0], cfg)
    return guard
