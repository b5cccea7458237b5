"""Structure-aware chunking within a token budget, with overlap.

Every format is first cut into *sections* along its structure, each with a heading trail:
Markdown by ATX/setext headings (fenced code is never split at a heading-looking line),
reStructuredText by underlined/overlined titles, HTML by h1-h6 (text only: scripts, styles
and markup dropped), Python by top-level definitions (`ast`; a class too large for one
chunk is cut per method), other code by top-level definition lines (a regex over common
keywords: where practical), plain text as one section. A section is made of *blocks*
(paragraphs, fenced code, list runs, statements) that are packed greedily into chunks of
at most `max_tokens` cl100k tokens; a block too large on its own is cut at lines, then
sentences, then tokens. Consecutive chunks of one section overlap by up to
`overlap_tokens` (whole trailing blocks where they fit, else trailing words); chunks of
different sections never overlap, since a heading is a real boundary.

A chunk that does not begin with its own heading starts with the heading trail
("Guide > Deploy > Production") so both the vector and the keyword side see its context.
Metadata: source, chunk index, start/end line (1-based, inclusive), heading trail, kind,
language, symbol (code)."""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from tokpulse.embeddings.reader import Document

DEFAULT_MAX_TOKENS = 200  # all-MiniLM-L6-v2 (the offline model) reads 256 word pieces at most
DEFAULT_OVERLAP_TOKENS = 30
MIN_BODY_TOKENS = 24


def count_tokens(text: str) -> int:
    from tokpulse.ai.tokens import count_tokens as _count

    return _count(text)


def _encoding():
    from tokpulse.ai.tokens import _enc

    return _enc()


def content_hash(content: str) -> str:
    """The chunk's identity within a namespace: sha256 hex of its normalised content."""
    return hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class Chunk:
    content: str
    source: str
    index: int
    tokens: int
    metadata: dict[str, Any]

    @property
    def content_hash(self) -> str:
        return content_hash(self.content)


@dataclass
class Block:
    text: str
    start: int  # 1-based line numbers, inclusive
    end: int
    tokens: int = -1
    is_heading: bool = False
    sep: str = "\n\n"  # what joins it to the block before it in a chunk


@dataclass
class Section:
    trail: list[str]
    blocks: list[Block] = field(default_factory=list)
    symbol: str | None = None


# -- packing -------------------------------------------------------------------------------

_SENTENCE = re.compile(r"(?<=[.!?;:])\s+(?=\S)")


def _tok(b: Block) -> int:
    if b.tokens < 0:
        b.tokens = count_tokens(b.text)
    return b.tokens


def _split_by_tokens(text: str, budget: int, start: int, end: int) -> list[Block]:
    enc = _encoding()
    ids = enc.encode_ordinary(text)
    out = []
    for i in range(0, len(ids), budget):
        piece = enc.decode(ids[i:i + budget])
        if piece.strip():
            out.append(Block(piece, start, end, -1, sep="" if out else "\n\n"))
    return out


def _split_block(b: Block, budget: int) -> list[Block]:
    """A block over budget as its lines (kept together with "\n"), a line over budget as
    its sentences, a sentence over budget as token windows. Small units let the packer
    fill chunks and carry whole lines or sentences as overlap."""
    if _tok(b) <= budget:
        return [b]
    out: list[Block] = []
    lines = b.text.split("\n")
    if len(lines) > 1:
        for off, line in enumerate(lines):
            if not line.strip():
                continue
            piece = Block(line, b.start + off, b.start + off, -1, sep="\n" if out else b.sep)
            out.extend(_split_block(piece, budget))
        return out
    sentences = _SENTENCE.split(b.text)
    if len(sentences) > 1:
        for s in sentences:
            piece = Block(s, b.start, b.end, -1, sep=" " if out else b.sep)
            out.extend(_split_block(piece, budget))
        return out
    pieces = _split_by_tokens(b.text, budget, b.start, b.end)
    if pieces:
        pieces[0].sep = b.sep
    return pieces


def _tail_text(text: str, budget: int) -> str:
    """The longest whitespace-aligned tail of `text` within `budget` tokens (formatting kept)."""
    starts = [m.start() for m in re.finditer(r"\S+", text)]
    best = ""
    for pos in reversed(starts):
        cand = text[pos:]
        if count_tokens(cand) > budget:
            break
        best = cand
    return best


def _join(blocks: list[Block]) -> str:
    parts = []
    for i, b in enumerate(blocks):
        if i:
            parts.append(b.sep)
        parts.append(b.text)
    return "".join(parts)


def _pack(section: Section, max_tokens: int, overlap: int) -> list[tuple[str, int, int, bool]]:
    """(body, start line, end line, starts with the section's heading) per chunk."""
    trail_line = " > ".join(section.trail)
    prefix_cost = count_tokens(trail_line) + 2 if trail_line else 0
    budget = max(MIN_BODY_TOKENS, max_tokens - prefix_cost)
    kept = [b for b in section.blocks if b.text.strip()]
    if not kept:
        return []
    # A section that surely fits (a token is at least one byte) is one chunk: the loop below
    # would end the same way, and counting its blocks' tokens is most of chunking's time.
    if sum(len(b.text.encode("utf-8", "surrogatepass")) + 1 for b in kept) <= budget:
        return [(_join(kept), kept[0].start, kept[-1].end, kept[0].is_heading)]
    blocks: list[Block] = []
    for b in kept:
        blocks.extend(_split_block(b, budget) if _tok(b) > budget else [b])
    chunks: list[tuple[str, int, int, bool]] = []
    cur: list[Block] = []
    cur_tokens = 0
    fresh = 0  # blocks in `cur` that are not overlap carried from the previous chunk
    for b in blocks:
        n = _tok(b) + 1
        if cur and cur_tokens + n > budget and fresh:
            chunks.append((_join(cur), cur[0].start, cur[-1].end, cur[0].is_heading))
            carry: list[Block] = []
            carried = 0
            if overlap > 0:
                for prev in reversed(cur):
                    if prev.is_heading or carried + _tok(prev) + 1 > overlap:
                        break
                    carry.insert(0, prev)
                    carried += _tok(prev) + 1
                # a sentence or token window too long to carry whole: carry its tail words
                # (never part of a line of code or of a table row)
                if not carry and not cur[-1].is_heading and cur[-1].sep in (" ", "") and len(cur) > 1:
                    tail = _tail_text(cur[-1].text, overlap)
                    if tail:
                        carry = [Block(tail, cur[-1].end, cur[-1].end, -1)]
                        carried = _tok(carry[0]) + 1
                if carried + n > budget:  # the carry must leave room for the new block
                    carry, carried = [], 0
            cur, cur_tokens, fresh = carry, carried, 0
        cur.append(b)
        cur_tokens += n
        fresh += 1
    if cur and fresh:
        chunks.append((_join(cur), cur[0].start, cur[-1].end, cur[0].is_heading))
    return chunks


def _clean(text: str) -> str:
    lines = [ln.rstrip() for ln in text.split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


# -- Markdown -------------------------------------------------------------------------------

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s")


def markdown_sections(text: str) -> list[Section]:
    lines = text.split("\n")
    sections = [Section(trail=[])]
    heads: list[tuple[int, str]] = []
    para: list[str] = []
    para_start = 0
    i = 0

    def flush(end: int) -> None:
        nonlocal para
        if para and any(p.strip() for p in para):
            sections[-1].blocks.append(Block("\n".join(para), para_start, end))
        para = []

    def open_section(level: int, title: str, line_no: int, raw: str) -> None:
        nonlocal heads
        heads = [h for h in heads if h[0] < level] + [(level, title)]
        sec = Section(trail=[t for _, t in heads])
        sec.blocks.append(Block(raw, line_no, line_no, -1, is_heading=True))
        sections.append(sec)

    # YAML front matter stays one block of the preamble.
    if lines and lines[0].strip() == "---":
        for j in range(1, min(len(lines), 200)):
            if lines[j].strip() in ("---", "..."):
                sections[0].blocks.append(Block("\n".join(lines[: j + 1]), 1, j + 1))
                i = j + 1
                break
    while i < len(lines):
        line = lines[i]
        no = i + 1
        fence = _FENCE.match(line)
        if fence:
            flush(no - 1)
            marker = fence.group(1)
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith(marker[0] * len(marker)):
                j += 1
            end = min(j, len(lines) - 1)
            sections[-1].blocks.append(Block("\n".join(lines[i:end + 1]), no, end + 1))
            i = end + 1
            continue
        atx = _ATX.match(line)
        if atx:
            flush(no - 1)
            title = (atx.group(2) or "").strip()
            open_section(len(atx.group(1)), title or f"(untitled h{len(atx.group(1))})", no, line.strip())
            i += 1
            continue
        setext = _SETEXT.match(line)
        if setext and len(para) == 1 and para[0].strip() and not _LIST_ITEM.match(para[0]) and \
                not para[0].lstrip().startswith(("|", ">")):
            title = para[0].strip()
            start = para_start
            para = []
            open_section(1 if setext.group(1)[0] == "=" else 2, title, start, f"{title}\n{line.strip()}")
            sections[-1].blocks[0].end = no
            i += 1
            continue
        if not line.strip():
            flush(no - 1)
            i += 1
            continue
        if not para:
            para_start = no
        para.append(line)
        i += 1
    flush(len(lines))
    return _drop_bare_headings(sections)


def _drop_bare_headings(sections: list[Section]) -> list[Section]:
    """A heading with no text before the next heading is only context: its title is in the
    next sections' trails, so it gets no chunk of its own."""
    kept = [s for s in sections if s.blocks]
    return [s for i, s in enumerate(kept)
            if not (all(b.is_heading for b in s.blocks) and i + 1 < len(kept))]


# -- reStructuredText ------------------------------------------------------------------------

_ADORN = re.compile(r"^([=\-`:'\"~^_*+#<>.!$%&(),/;?@\[\\\]{|}])\1{2,}\s*$")


def rst_sections(text: str) -> list[Section]:
    lines = text.split("\n")
    styles: list[tuple[str, bool]] = []
    heads: list[tuple[int, str]] = []
    sections = [Section(trail=[])]
    para: list[str] = []
    para_start = 0
    i = 0

    def flush(end: int) -> None:
        nonlocal para
        if para and any(p.strip() for p in para):
            sections[-1].blocks.append(Block("\n".join(para), para_start, end))
        para = []

    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        over = _ADORN.match(line)
        # overline + title + underline
        if over and i + 2 < len(lines) and lines[i + 1].strip() and _ADORN.match(lines[i + 2]) and \
                lines[i + 2].strip()[0] == line.strip()[0]:
            style = (line.strip()[0], True)
            title = lines[i + 1].strip()
            raw = "\n".join(lines[i:i + 3])
            start, end = i + 1, i + 3
            i += 3
        elif line.strip() and not line[0].isspace() and _ADORN.match(nxt) and \
                len(nxt.strip()) >= len(line.strip()) and not over:
            style = (nxt.strip()[0], False)
            title = line.strip()
            raw = f"{line}\n{nxt}"
            start, end = i + 1, i + 2
            i += 2
        else:
            if not line.strip():
                flush(i)
            else:
                if not para:
                    para_start = i + 1
                para.append(line)
            i += 1
            continue
        flush(start - 1)
        if style not in styles:
            styles.append(style)
        level = styles.index(style) + 1
        heads = [h for h in heads if h[0] < level] + [(level, title)]
        sec = Section(trail=[t for _, t in heads])
        sec.blocks.append(Block(raw, start, end, -1, is_heading=True))
        sections.append(sec)
    flush(len(lines))
    return _drop_bare_headings(sections)


# -- HTML --------------------------------------------------------------------------------------

_BLOCK_TAGS = {"p", "div", "section", "article", "main", "header", "footer", "nav", "aside", "ul", "ol",
               "table", "tr", "blockquote", "figure", "figcaption", "form", "dl", "dt", "dd", "details",
               "summary", "hr", "br", "body", "html"}
_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "head", "iframe", "object", "canvas"}


class _HTMLText(HTMLParser):
    """HTML to Markdown-shaped text: headings become `#` lines, <pre> a fence, <li> a bullet."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.pre = 0
        self.title: str | None = None
        self._in_title = False
        self._heading: int | None = None

    def _nl(self, n: int = 2) -> None:
        self.out.append("\n" * n)

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "title":
            self._in_title = True
            return
        if tag in _SKIP_TAGS:
            self.skip += 1
            return
        if self.skip:
            return
        if len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self._nl()
            self.out.append("#" * int(tag[1]) + " ")
            self._heading = int(tag[1])
        elif tag == "pre":
            self._nl()
            self.out.append("```\n")
            self.pre += 1
        elif tag == "li":
            self._nl(1)
            self.out.append("- ")
        elif tag in ("td", "th"):
            self.out.append(" | ")
        elif tag in _BLOCK_TAGS:
            self._nl(2 if tag != "br" else 1)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
            return
        if tag in _SKIP_TAGS:
            self.skip = max(0, self.skip - 1)
            return
        if self.skip:
            return
        if len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self._heading = None
            self._nl()
        elif tag == "pre":
            self.out.append("\n```")
            self.pre = max(0, self.pre - 1)
            self._nl()
        elif tag in _BLOCK_TAGS:
            self._nl()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = ((self.title or "") + data).strip()
            return
        if self.skip:
            return
        if self.pre:
            self.out.append(data)
        else:
            text = re.sub(r"\s+", " ", data)
            if self._heading is not None:
                text = text.replace("\n", " ")
            self.out.append(text)

    def text(self) -> str:
        raw = "".join(self.out)
        raw = re.sub(r"[ \t]+\n", "\n", raw)
        raw = re.sub(r"\n{3,}", "\n\n", raw)
        return raw.strip()


def html_to_text(html: str) -> tuple[str, str | None]:
    """(Markdown-shaped text, <title>)."""
    p = _HTMLText()
    try:
        p.feed(html)
        p.close()
    except Exception:  # noqa: BLE001 - malformed markup: keep what was parsed
        pass
    return p.text(), p.title


# -- code ----------------------------------------------------------------------------------------

def _python_sections(text: str, max_tokens: int) -> list[Section] | None:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    lines = text.split("\n")
    units: list[tuple[int, int, str | None, ast.stmt | None]] = []  # start, end (1-based), symbol, node
    cursor = 1
    for node in tree.body:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        end = getattr(node, "end_lineno", None) or node.lineno
        name = getattr(node, "name", None) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef |
                                                           ast.ClassDef) else None
        # comments and blank lines directly above belong to what follows them
        lead = start
        while lead - 1 >= cursor and lines[lead - 2].strip().startswith("#"):
            lead -= 1
        if units and units[-1][2] is None and name is None:
            s, _, _, _ = units[-1]
            units[-1] = (s, end, None, None)
        else:
            if lead > cursor and units:
                s, e, sym, nd = units[-1]
                units[-1] = (s, lead - 1, sym, nd)
            units.append((cursor if not units else lead, end, name, node))
        cursor = end + 1
    if units and cursor <= len(lines):
        s, _, sym, nd = units[-1]
        units[-1] = (s, len(lines), sym, nd)
    if not units:
        return [Section(trail=[], blocks=_blank_blocks(lines, 1, len(lines)))]
    sections: list[Section] = []
    for start, end, name, node in units:
        body = "\n".join(lines[start - 1:end])
        if isinstance(node, ast.ClassDef) and count_tokens(body) > max_tokens and node.body:
            first_method = next((n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)),
                                None)
            head_end = (min([first_method.lineno] + [d.lineno for d in first_method.decorator_list]) - 1
                        if first_method else end)
            sections.append(Section(trail=[name or ""], symbol=name, blocks=_blank_blocks(lines, start, head_end)))
            prev_end = head_end
            for n in node.body:
                if not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                ms = min([n.lineno] + [d.lineno for d in n.decorator_list])
                ms = max(ms, prev_end + 1)
                me = n.end_lineno or n.lineno
                sym = f"{name}.{n.name}"
                sections.append(Section(trail=[name or "", n.name], symbol=sym, blocks=_blank_blocks(lines, ms, me)))
                prev_end = me
            if prev_end < end:
                sections[-1].blocks.extend(_blank_blocks(lines, prev_end + 1, end))
            continue
        sections.append(Section(trail=[name] if name else [], symbol=name, blocks=_blank_blocks(lines, start, end)))
    return [s for s in sections if s.blocks]


def _blank_blocks(lines: list[str], start: int, end: int) -> list[Block]:
    """Lines start..end (1-based) as blocks separated by blank lines."""
    out: list[Block] = []
    cur: list[str] = []
    cur_start = start
    for no in range(start, end + 1):
        line = lines[no - 1] if no - 1 < len(lines) else ""
        if not line.strip():
            if cur:
                out.append(Block("\n".join(cur), cur_start, no - 1))
                cur = []
            continue
        if not cur:
            cur_start = no
        cur.append(line)
    if cur:
        out.append(Block("\n".join(cur), cur_start, end))
    return out


_KEYWORDS = (r"function\*?|class|interface|enum|struct|trait|impl|type|fn|func|def|module|namespace|object|"
             r"record|const|let|var|macro_rules!|union|protocol|extension|subroutine|sub|procedure")
_TOP_DEF = re.compile(
    r"^(?:export\s+(?:default\s+)?|pub(?:\([^)]*\))?\s+|async\s+|static\s+|public\s+|private\s+|protected\s+|"
    r"internal\s+|final\s+|abstract\s+|sealed\s+|data\s+|open\s+|unsafe\s+|extern\s+(?:\"C\"\s+)?|inline\s+|"
    r"override\s+|@\w+(?:\([^)]*\))?\s+)*(?:" + _KEYWORDS + r")\b")
_C_FUNC = re.compile(r"^[A-Za-z_][\w\s\*&:<>,]*?\b([A-Za-z_]\w*)\s*\([^;]*$")
_SYMBOL = re.compile(r"\b(?:" + _KEYWORDS + r")\s+(?:\([^)]*\)\s*)?([A-Za-z_$][\w$]*)")
_COMMENT = re.compile(r"^\s*(?://|/\*|\*|#|--|;;|%|\"\"\"|''')")


def _generic_code_sections(text: str) -> list[Section]:
    lines = text.split("\n")
    starts: list[tuple[int, str | None]] = []
    for idx, line in enumerate(lines):
        if not line or line[0].isspace() or line.startswith(("}", ")", "]", "//", "/*", "*", "#")):
            continue
        sym = None
        if _TOP_DEF.match(line):
            m = _SYMBOL.search(line)
            sym = m.group(1) if m else None
        else:
            m = _C_FUNC.match(line)
            if not (m and (line.rstrip().endswith(("{", ")")) or (idx + 1 < len(lines) and
                                                                   lines[idx + 1].strip().startswith("{")))):
                continue
            if m.group(1) in ("if", "for", "while", "switch", "return", "sizeof"):
                continue
            sym = m.group(1)
        start = idx
        while start > 0 and lines[start - 1].strip() and _COMMENT.match(lines[start - 1]):
            start -= 1
        starts.append((start + 1, sym))
    if not starts:
        return [Section(trail=[], blocks=_blank_blocks(lines, 1, len(lines)))]
    sections: list[Section] = []
    if starts[0][0] > 1:
        sections.append(Section(trail=[], blocks=_blank_blocks(lines, 1, starts[0][0] - 1)))
    for k, (start, sym) in enumerate(starts):
        end = starts[k + 1][0] - 1 if k + 1 < len(starts) else len(lines)
        if end < start:
            continue
        sections.append(Section(trail=[sym] if sym else [], symbol=sym, blocks=_blank_blocks(lines, start, end)))
    return [s for s in sections if s.blocks]


def _merge_small(sections: list[Section], max_tokens: int) -> list[Section]:
    """Consecutive small code units share a chunk (imports with constants, tiny helpers)."""
    out: list[Section] = []
    size = 0
    for s in sections:
        n = sum(_tok(b) + 1 for b in s.blocks)
        if out and size + n <= max_tokens // 2 and n <= max_tokens // 4 and len(out[-1].trail) <= 1 \
                and len(s.trail) <= 1:
            prev = out[-1]
            prev.blocks.extend(s.blocks)
            syms = [x for x in (prev.symbol, s.symbol) if x]
            prev.symbol = ", ".join(syms) if syms else None
            prev.trail = []
            size += n
            continue
        out.append(Section(trail=list(s.trail), blocks=list(s.blocks), symbol=s.symbol))
        size = n
    return out


# -- entry point ------------------------------------------------------------------------------

def plain_sections(text: str) -> list[Section]:
    lines = text.split("\n")
    return [Section(trail=[], blocks=_blank_blocks(lines, 1, len(lines)))]


SECTIONERS: dict[str, Callable[[str], list[Section]]] = {
    "markdown": markdown_sections,
    "rst": rst_sections,
    "text": plain_sections,
}


def chunk_document(doc: Document, *, max_tokens: int = DEFAULT_MAX_TOKENS,
                   overlap_tokens: int = DEFAULT_OVERLAP_TOKENS) -> list[Chunk]:
    """Cut one document into chunks (see the module docstring)."""
    if max_tokens < MIN_BODY_TOKENS * 2:
        raise ValueError(f"max_tokens must be at least {MIN_BODY_TOKENS * 2} (got {max_tokens})")
    if not 0 <= overlap_tokens < max_tokens // 2:
        raise ValueError(f"overlap_tokens must be between 0 and {max_tokens // 2 - 1} (got {overlap_tokens})")
    text = doc.text
    kind = doc.kind
    base_trail: list[str] = []
    if kind == "html":
        text, title = html_to_text(text)
        sections = markdown_sections(text)
        if title and not any(s.trail for s in sections):
            base_trail = [title]
    elif kind == "code":
        sections = (_python_sections(text, max_tokens) if doc.language == "python" else None) or \
            _generic_code_sections(text)
        sections = _merge_small(sections, max_tokens)
    else:
        sections = SECTIONERS.get(kind, plain_sections)(text)
    chunks: list[Chunk] = []
    for sec in sections:
        trail = base_trail + sec.trail
        packed = _pack(Section(trail=trail, blocks=sec.blocks, symbol=sec.symbol), max_tokens, overlap_tokens)
        for j, (body, start, end, starts_with_heading) in enumerate(packed):
            body = _clean(body)
            if not body:
                continue
            context = trail[:-1] if starts_with_heading else trail
            if kind == "code":
                # a definition's first chunk starts with its own signature; later ones say whose
                # body they continue
                context = [f"{sec.symbol} (continued)"] if j and sec.symbol else []
            content = (" > ".join(context) + "\n\n" + body) if context else body
            meta: dict[str, Any] = {
                "source": doc.source,
                "chunk": len(chunks),
                "start_line": start,
                "end_line": end,
                "headings": trail,
                "kind": kind,
            }
            if doc.language:
                meta["language"] = doc.language
            if sec.symbol:
                meta["symbol"] = sec.symbol
            for k, v in doc.metadata.items():
                if k != "path":
                    meta.setdefault(k, v)
            chunks.append(Chunk(content=content, source=doc.source, index=len(chunks),
                                tokens=count_tokens(content), metadata=meta))
    return chunks
