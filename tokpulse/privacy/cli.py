"""`tokpulse redact [--strict] [--json] [FILE]`: redact a file or stdin to stdout.

Text mode writes the text with PII and credentials replaced. `--json` reads one JSON document
and writes `redact_object` of it (a list of strings comes back as the list of redacted
strings, same length and order). Input is UTF-8; undecodable bytes become U+FFFD. Input over
`privacy.max_input_bytes` is refused before anything is written. Errors are one line on
stderr and exit code 1 (a configuration error is exit 2, from the caller)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import BinaryIO

from tokpulse.privacy.errors import PrivacyInputError, too_large
from tokpulse.privacy.guard import PrivacyGuard, get_privacy_guard
from tokpulse.settings import Settings

BLOCK_CHARS = 8 * 1024 * 1024  # text mode redacts and writes in line-aligned blocks of about this size


def _fail(msg: str) -> int:
    print(f"tokpulse redact: {msg}", file=sys.stderr)
    return 1


def _read(path: str | None, limit: int) -> bytes:
    if path is None or path == "-":
        stream: BinaryIO = getattr(sys.stdin, "buffer", sys.stdin)
        data = stream.read(limit + 1)
        if isinstance(data, str):  # a text stream without a buffer (tests, odd embedders)
            data = data.encode("utf-8", "surrogateescape")
        if len(data) > limit:
            raise too_large(len(data) + len(stream.read()), limit)
        return data
    size = os.stat(path).st_size
    if size > limit:
        raise too_large(size, limit)
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:  # grew while we looked
        raise too_large(len(data), limit)
    return data


def _write(text: str) -> None:
    out = getattr(sys.stdout, "buffer", None)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write(text.encode("utf-8", "replace"))


def blocks(text: str, size: int = BLOCK_CHARS) -> list[tuple[int, int]]:
    """Line-aligned (start, end) blocks of about `size` characters, never inside a PEM block.

    The built-in detectors never match across a newline except PEM private keys, so redacting
    block by block gives the same result as redacting the whole text."""
    out, start, n = [], 0, len(text)
    while n - start > size:
        cut = text.rfind("\n", start, start + size)
        if cut <= start:
            cut = text.find("\n", start + size)
            if cut < 0:
                break
        cut += 1
        begin = text.rfind("-----BEGIN", start, cut)
        if begin >= 0 and text.find("-----END", begin, cut) < 0:
            end = text.find("-----END", cut)
            if end < 0:
                break
            nl = text.find("\n", end)
            if nl < 0:
                break
            cut = nl + 1
        out.append((start, cut))
        start = cut
    out.append((start, n))
    return out


def redact_stream(guard: PrivacyGuard, text: str) -> None:
    """Write `guard.redact(text)` to stdout, block by block when that gives the same result."""
    if guard.config.custom_patterns:  # a custom pattern may span lines: one pass over everything
        _write(guard.redact(text))
        return
    for s, e in blocks(text, BLOCK_CHARS):
        _write(guard.redact(text[s:e]))


def cmd_redact(args: argparse.Namespace, settings: Settings) -> int:
    """Entry point for `tokpulse redact` (see the module docstring)."""
    config = settings.agent.privacy
    guard = get_privacy_guard(bool(getattr(args, "strict", False)), config)
    path = getattr(args, "file", None)
    try:
        raw = _read(path, config.max_input_bytes)
    except PrivacyInputError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot read {path}: {exc.strerror or exc}")
    try:
        if getattr(args, "json", False):
            text = raw.decode("utf-8", "replace").removeprefix("\ufeff")
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as exc:
                return _fail(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
            except RecursionError:
                return _fail(f"nesting deeper than {config.max_depth} levels (privacy.max_depth)")
            _write(json.dumps(guard.redact_object(doc), ensure_ascii=False) + "\n")
        else:
            redact_stream(guard, raw.decode("utf-8", "replace"))
    except PrivacyInputError as exc:
        return _fail(str(exc))
    except BrokenPipeError:  # `tokpulse redact big.log | head`: the reader has gone, not an error
        try:  # the recipe from the Python docs: keep the interpreter's final flush quiet
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    sys.stdout.flush()
    return 0
