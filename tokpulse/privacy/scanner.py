"""The fast pass: find where candidates may be, with Hyperscan (Python `re` if it is missing).

Hyperscan compiles every detector's trigger into one database and scans UTF-8 bytes at
hundreds of MB/s; a callback records (trigger id, end offset) per candidate. The exact work
(regex on a small window, Luhn, mod-97, context) happens afterwards in Python, only where a
trigger fired. Custom patterns use Hyperscan's prefilter mode (a superset of the real
matches); when Hyperscan can't even approximate one, it simply always runs."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

try:  # pragma: no cover - exercised by whichever branch the machine has
    import hyperscan as _hs
except ImportError:  # pragma: no cover
    _hs = None


@dataclass(frozen=True)
class Trigger:
    pattern: bytes
    target: int  # index of the detector (or custom pattern) it belongs to
    caseless: bool = False
    prefilter: bool = False  # custom pattern: superset match, one report is enough


def _on_match(id_: int, frm: int, to: int, flags: int, hits: list[tuple[int, int]]) -> None:
    hits.append((id_, to))


class Scanner:
    """Scans bytes for all triggers; `scan(data)` returns [(trigger index, end offset)]."""

    def __init__(self, triggers: Sequence[Trigger]):
        self.triggers = list(triggers)
        self.always: set[int] = set()  # trigger ids that could not be compiled: always "hit"
        self.engine = "re"
        self._db = None
        self._local = threading.local()
        if _hs is not None:
            try:
                self._compile_hyperscan()
                self.engine = "hyperscan"
            except Exception as exc:  # noqa: BLE001 - any engine failure falls back, loudly
                log.warning("privacy: hyperscan unavailable (%s); using the slow Python fallback", exc)
                self._db = None
        if self._db is None:
            self._compile_re()

    # -- Hyperscan ---------------------------------------------------------------------------
    def _flags(self, t: Trigger) -> int:
        f = _hs.HS_FLAG_CASELESS if t.caseless else 0
        if t.prefilter:
            f |= _hs.HS_FLAG_PREFILTER | _hs.HS_FLAG_SINGLEMATCH | _hs.HS_FLAG_UTF8 | _hs.HS_FLAG_UCP
        return f

    def _compile_hyperscan(self) -> None:
        exprs, ids, flags = [], [], []
        for i, t in enumerate(self.triggers):
            if t.prefilter:
                # Probe custom patterns one by one so a pattern Hyperscan can't take doesn't
                # sink the others.
                probe = _hs.Database(mode=_hs.HS_MODE_BLOCK)
                try:
                    probe.compile(expressions=[t.pattern], ids=[0], flags=[self._flags(t)])
                except Exception as exc:  # noqa: BLE001 - hyperscan raises its own error types
                    log.info("privacy: custom pattern %d runs without prefilter (%s)", t.target, exc)
                    self.always.add(i)
                    continue
            exprs.append(t.pattern)
            ids.append(i)
            flags.append(self._flags(t))
        db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
        db.compile(expressions=exprs, ids=ids, flags=flags)
        self._db = db

    def _scratch(self):
        s = getattr(self._local, "scratch", None)
        if s is None:
            s = self._local.scratch = _hs.Scratch(self._db)
        return s

    # -- Python fallback ---------------------------------------------------------------------
    def _compile_re(self) -> None:
        self._res: list[tuple[int, re.Pattern[bytes]]] = []
        for i, t in enumerate(self.triggers):
            if t.prefilter:
                self.always.add(i)
                continue
            self._res.append((i, re.compile(t.pattern, re.I if t.caseless else 0)))

    def scan(self, data: bytes) -> list[tuple[int, int]]:
        hits: list[tuple[int, int]] = [(i, 0) for i in self.always]
        if self._db is not None:
            self._db.scan(data, match_event_handler=_on_match, context=hits, scratch=self._scratch())
        else:
            for i, rx in self._res:
                hits.extend((i, m.end()) for m in rx.finditer(data))
        return hits
