"""Reading what gets embedded: files under a path, or documents handed over inline.

What is read: Markdown, plain text, reStructuredText, HTML (its text only) and source
code (plus a few text formats such as TOML/YAML/JSON, read as plain text). What is not:
binaries (a NUL byte in the first 8 KiB, or a known binary extension), files over the
size limit, empty files and other types. Each skipped file is counted with its reason;
files that cannot be read or decoded are errors. Neither stops the rest of the batch.
Hidden directories and dependency/build caches (`.git`, `node_modules`, `__pycache__`,
virtualenvs) are not descended into."""

from __future__ import annotations

import codecs
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MAX_FILE_BYTES = 1024 * 1024
_SNIFF_BYTES = 8192

MARKDOWN_EXT = {".md", ".markdown", ".mdown", ".mkd", ".mdx"}
RST_EXT = {".rst", ".rest"}
HTML_EXT = {".html", ".htm", ".xhtml"}
TEXT_EXT = {".txt", ".text", ".log", ".csv", ".tsv", ".toml", ".yaml", ".yml", ".json", ".ini", ".cfg",
            ".conf", ".properties", ".env.example", ".sql", ".graphql", ".proto", ".tex", ".adoc", ".org"}
CODE_EXT = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".jsx": "javascript", ".ts": "typescript", ".tsx": "typescript", ".mts": "typescript", ".go": "go",
    ".rs": "rust", ".java": "java", ".kt": "kotlin", ".kts": "kotlin", ".scala": "scala", ".c": "c",
    ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".cs": "csharp",
    ".rb": "ruby", ".php": "php", ".swift": "swift", ".m": "objc", ".sh": "shell", ".bash": "shell",
    ".zsh": "shell", ".ps1": "powershell", ".lua": "lua", ".pl": "perl", ".r": "r", ".jl": "julia",
    ".ex": "elixir", ".exs": "elixir", ".erl": "erlang", ".hs": "haskell", ".ml": "ocaml", ".clj": "clojure",
    ".dart": "dart", ".vue": "vue", ".svelte": "svelte", ".css": "css", ".scss": "css", ".less": "css",
}
TEXT_NAMES = {"readme", "license", "licence", "copying", "authors", "contributing", "changelog", "changes",
              "notice", "todo", "install", "makefile", "dockerfile", "procfile", "gemfile", "justfile"}
BINARY_EXT = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".webp", ".tif", ".tiff", ".psd", ".pdf",
              ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".tar", ".jar", ".war", ".whl",
              ".exe", ".dll", ".so", ".dylib", ".a", ".o", ".obj", ".class", ".pyc", ".pyo", ".wasm", ".bin",
              ".dat", ".db", ".sqlite", ".sqlite3", ".mp3", ".mp4", ".wav", ".ogg", ".flac", ".mov", ".avi",
              ".mkv", ".webm", ".woff", ".woff2", ".ttf", ".otf", ".eot", ".pkl", ".npy", ".npz", ".pt",
              ".onnx", ".safetensors", ".parquet", ".avro", ".iso", ".dmg", ".deb", ".rpm", ".doc", ".docx",
              ".xls", ".xlsx", ".ppt", ".pptx", ".odt"}
IGNORED_DIRS = {"node_modules", "__pycache__", "venv", "site-packages", "dist-packages", "bower_components"}


@dataclass
class Document:
    """One text to chunk: `source` names it in results (a path relative to the root's
    parent, or the caller's label for inline documents)."""

    text: str
    source: str
    kind: str  # markdown | rst | html | code | text
    language: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Issue:
    """A file or document that was not embedded: `skipped` by policy or `failed`."""

    source: str
    status: str  # skipped | failed
    reason: str  # short category: binary, too_large, empty, unsupported, unreadable, undecodable, invalid
    message: str  # one line: what, and what to do

    def as_dict(self) -> dict[str, str]:
        return {"source": self.source, "status": self.status, "reason": self.reason, "message": self.message}


@dataclass
class ReadReport:
    documents: list[Document] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    ignored_dirs: int = 0

    @property
    def skipped(self) -> list[Issue]:
        return [i for i in self.issues if i.status == "skipped"]

    @property
    def failed(self) -> list[Issue]:
        return [i for i in self.issues if i.status == "failed"]

    def summary(self) -> dict[str, Any]:
        return {
            "read": len(self.documents),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "skipped_by_reason": dict(Counter(i.reason for i in self.skipped)),
            "failed_by_reason": dict(Counter(i.reason for i in self.failed)),
            "ignored_dirs": self.ignored_dirs,
        }


def classify(path: Path) -> tuple[str, str | None] | None:
    """(kind, language) for a file name, or None when the type is not read."""
    name = path.name.lower()
    suffix = path.suffix.lower()
    if suffix in MARKDOWN_EXT:
        return "markdown", None
    if suffix in RST_EXT:
        return "rst", None
    if suffix in HTML_EXT:
        return "html", None
    if suffix in CODE_EXT:
        return "code", CODE_EXT[suffix]
    if suffix in TEXT_EXT or name.endswith(".env.example"):
        return "text", None
    stem = name.split(".", 1)[0]
    if stem in TEXT_NAMES:
        return ("markdown", None) if stem == "readme" and not suffix else ("text", None)
    return None


def _human(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def decode(data: bytes) -> str:
    """UTF-8 (BOM allowed), or UTF-16/32 with a BOM. Raises UnicodeDecodeError otherwise."""
    if data.startswith(codecs.BOM_UTF32_LE) or data.startswith(codecs.BOM_UTF32_BE):
        text = data.decode("utf-32")
    elif data.startswith(codecs.BOM_UTF16_LE) or data.startswith(codecs.BOM_UTF16_BE):
        text = data.decode("utf-16")
    else:
        text = data.decode("utf-8-sig")
    return text.lstrip("\ufeff")


_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_str(value: str) -> str:
    """Text Postgres can store: no NULs, and lone surrogates (undecodable file names, bad
    job input) turned into U+FFFD, so one bad document is not a failed batch."""
    value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = _SURROGATE.sub("\ufffd", value)  # a Python str holds only lone surrogates
    return value


def clean_json(value: Any) -> Any:
    """`clean_str` over every string (keys included) of a JSON-shaped value."""
    if isinstance(value, str):
        return clean_str(value)
    if isinstance(value, dict):
        return {clean_str(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


def normalize_text(text: str) -> str:
    """NFC, \\n line ends, no NULs, no lone surrogates: the form chunks are hashed and stored in."""
    text = clean_str(text.replace("\r\n", "\n").replace("\r", "\n"))
    return unicodedata.normalize("NFC", text)


def read_file(path: Path, source: str, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES,
              kind: tuple[str, str | None] | None = None) -> Document | Issue:
    """One file as a Document, or the Issue explaining why not."""
    kind = kind or classify(path)
    suffix = path.suffix.lower()
    if suffix in BINARY_EXT:
        return Issue(source, "skipped", "binary", f"{source}: binary file ({suffix}); not embedded")
    if kind is None:
        what = suffix or "no extension"
        return Issue(source, "skipped", "unsupported",
                     f"{source}: unsupported file type ({what}); only Markdown, text, reST, HTML and code are read")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return Issue(source, "skipped", "too_large",
                         f"{source}: {_human(size)} is over the {_human(max_bytes)} limit; raise --max-file-bytes "
                         "or split the file")
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except PermissionError:
        return Issue(source, "failed", "unreadable", f"{source}: permission denied; make it readable by this user")
    except OSError as exc:
        return Issue(source, "failed", "unreadable", f"{source}: cannot read ({exc.strerror or exc}); check the file")
    if len(data) > max_bytes:  # grew while we looked
        return Issue(source, "skipped", "too_large", f"{source}: over the {_human(max_bytes)} limit; raise "
                                                       "--max-file-bytes or split the file")
    bom = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if not bom and b"\x00" in data[:_SNIFF_BYTES]:
        return Issue(source, "skipped", "binary", f"{source}: binary content (NUL bytes); not embedded")
    try:
        text = decode(data)
    except UnicodeDecodeError as exc:
        bad = data[exc.start] if exc.start < len(data) else 0
        return Issue(source, "failed", "undecodable",
                     f"{source}: not UTF-8 text (byte 0x{bad:02x} at offset {exc.start}); convert it to UTF-8 "
                     "or exclude it")
    text = normalize_text(text)
    if not text.strip():
        return Issue(source, "skipped", "empty", f"{source}: empty file; nothing to embed")
    return Document(text=text, source=source, kind=kind[0], language=kind[1])


def _walk(root: Path) -> Iterator[tuple[Path, bool]]:
    """(file, False) for each file under root in a stable order; (dir, True) for ignored dirs."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        keep = []
        for d in sorted(dirnames):
            if d.startswith(".") or d in IGNORED_DIRS or (Path(dirpath, d) / "pyvenv.cfg").exists():
                yield Path(dirpath, d), True
            else:
                keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            yield Path(dirpath, f), False


def source_label(root: Path, path: Path) -> str:
    """How a file is named in results: relative to the root's parent (`docs/guide.md`)."""
    base = root.parent if root.is_dir() else path.parent
    try:
        return clean_str(path.relative_to(base).as_posix())
    except ValueError:
        return clean_str(path.name)


def read_paths(paths: Iterable[str | os.PathLike], *, max_bytes: int = DEFAULT_MAX_FILE_BYTES,
               on_file=None) -> ReadReport:
    """Read every supported file under each path (a file or a directory)."""
    report = ReadReport()
    for p in paths:
        root = Path(p).expanduser()
        if not root.exists():
            report.issues.append(Issue(str(p), "failed", "missing", f"{p}: no such file or directory"))
            continue
        root = root.resolve()
        if root.is_file():
            entries: Iterable[tuple[Path, bool]] = [(root, False)]
        else:
            entries = _walk(root)
        for path, ignored in entries:
            if ignored:
                report.ignored_dirs += 1
                continue
            label = source_label(root, path)
            if path.is_symlink() and not path.exists():
                report.issues.append(Issue(label, "failed", "unreadable", f"{label}: broken symbolic link"))
                continue
            if not path.is_file():
                continue
            got = read_file(path, label, max_bytes=max_bytes)
            if isinstance(got, Document):
                got.metadata["path"] = str(path)
                report.documents.append(got)
            else:
                report.issues.append(got)
            if on_file is not None:
                on_file(label)
    return report


def _kind_of(spec: Any, source: str) -> tuple[str, str | None]:
    if isinstance(spec, str) and spec:
        s = spec.lower()
        if s in ("markdown", "md"):
            return "markdown", None
        if s in ("rst", "restructuredtext"):
            return "rst", None
        if s in ("html", "htm"):
            return "html", None
        if s in ("text", "txt", "plain"):
            return "text", None
        if s == "code":
            return "code", None
        if s in set(CODE_EXT.values()):
            return "code", s
    got = classify(Path(source)) if source else None
    return got or ("markdown", None)


def read_inline(documents: Iterable[Any], *, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> ReadReport:
    """Documents handed over in a job: strings, or {"text", "source"?, "kind"?, "metadata"?}."""
    report = ReadReport()
    for i, d in enumerate(documents):
        label = f"documents[{i}]"
        if isinstance(d, str):
            d = {"text": d}
        if not isinstance(d, dict):
            report.issues.append(Issue(label, "failed", "invalid",
                                       f"{label}: must be a string or an object with a 'text' (got "
                                       f"{type(d).__name__})"))
            continue
        source = d.get("source") if isinstance(d.get("source"), str) and d.get("source") else f"inline:{i}"
        source = clean_str(source)
        text = d.get("text")
        if not isinstance(text, str):
            report.issues.append(Issue(source, "failed", "invalid",
                                       f"{label} ({source}): 'text' must be a string (got {type(text).__name__})"))
            continue
        meta = d.get("metadata")
        meta = {} if meta is None else meta
        if not isinstance(meta, dict):
            report.issues.append(Issue(source, "failed", "invalid", f"{label} ({source}): 'metadata' must be an "
                                                                     "object"))
            continue
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            report.issues.append(Issue(source, "skipped", "too_large",
                                       f"{source}: {_human(size)} is over the {_human(max_bytes)} limit; split it"))
            continue
        text = normalize_text(text)
        if not text.strip():
            report.issues.append(Issue(source, "skipped", "empty", f"{source}: empty document; nothing to embed"))
            continue
        kind, lang = _kind_of(d.get("kind"), source)
        report.documents.append(Document(text=text, source=source, kind=kind, language=lang,
                                         metadata=clean_json(dict(meta))))
    return report
