"""A loopback stand-in for the GitHub REST and GraphQL APIs (issues, comments, releases, commits,
compare, discussions), with GitHub's JSON shapes, pagination, rate limits and fault injection.

    with FakeGitHub() as gh:
        headers = {"Authorization": f"Bearer {gh.token}"}
        httpx.post(f"{gh.api_url}/repos/{gh.repo}/issues", json={"title": "x"}, headers=headers)
        assert gh.issues[0]["title"] == "x"

Request order inside the server: hang_next / latency -> auth (401) -> primary rate limit exhausted (403) ->
fail_next (5xx) -> secondary_limit_next (403 + retry-after) -> the request is counted against the
primary limit -> routing (404 / 422 / 2xx). `GET /rate_limit` is never counted (as on GitHub).

GraphQL is served by a small real parser (operations, aliases, variables, fragments, inline
fragments, @skip/@include) over this schema subset:
  query    repository(owner, name) { id name nameWithOwner url owner{login} hasDiscussionsEnabled
             discussionCategories(first, after) discussions(first, after, categoryId)
             discussion(number) }
           viewer { login id }  rateLimit { limit cost remaining used resetAt }
  mutation createDiscussion(input: {repositoryId, categoryId, title, body, clientMutationId})
             { clientMutationId discussion { id number title body url createdAt updatedAt
               author{login} category{id name slug} } }
Connections have nodes, edges{cursor node}, pageInfo{hasNextPage endCursor hasPreviousPage
startCursor} and totalCount. Anything else gets a GraphQL error body.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from .openai_server import FakeRequest, FakeResponse, LoopbackFake

__all__ = ["FakeGitHub", "GraphQLError"]

_DOCS = "https://docs.github.com/rest"
_WEB = "https://github.com"


def _now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node_id(prefix: str, kind: str, ident: int | str) -> str:
    token = (
        base64.b64encode(f"{kind}:{ident}".encode()).decode().rstrip("=").replace("+", "-").replace("/", "_")
    )
    return f"{prefix}_kwDO{token}"


def _gh_error(status: int, message: str, doc: str = _DOCS, **extra: Any) -> FakeResponse:
    body = {"message": message, "documentation_url": doc, "status": str(status)}
    body.update(extra)
    return FakeResponse(status, body, content_type="application/json; charset=utf-8")


def _validation_failed(resource: str, field: str, code: str = "missing_field", **more: Any) -> FakeResponse:
    error = {"resource": resource, "code": code, "field": field}
    error.update(more)
    return _gh_error(422, "Validation Failed", errors=[error])


class _Fail(Exception):
    def __init__(self, response: FakeResponse) -> None:
        super().__init__(response.status)
        self.response = response


# --------------------------------------------------------------------------------------------------
# A small GraphQL parser + executor
# --------------------------------------------------------------------------------------------------


class GraphQLError(Exception):
    def __init__(self, message: str, type_: str = "INVALID", path: list[Any] | None = None) -> None:
        super().__init__(message)
        self.type = type_
        self.path = path

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "message": str(self)}
        if self.path is not None:
            out["path"] = self.path
        return out


_TOKEN_RE = re.compile(
    r"(?P<ws>[\s,\ufeff]+|#[^\n]*)"
    r'|(?P<block>"""(?:[^"\\]|\\.|"(?!""))*""")'
    r'|(?P<string>"(?:[^"\\\n]|\\.)*")'
    r"|(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[_A-Za-z][_0-9A-Za-z]*)"
    r"|(?P<punct>\.\.\.|[!$&()\:=@\[\]{|}])"
)


class _Var:
    def __init__(self, name: str) -> None:
        self.name = name


class _Field:
    def __init__(
        self, name: str, alias: str | None, args: dict[str, Any], directives: list, selections: list
    ):
        self.name = name
        self.key = alias or name
        self.args = args
        self.directives = directives
        self.selections = selections


class _Spread:
    def __init__(self, name: str, directives: list) -> None:
        self.name = name
        self.directives = directives


class _Inline:
    def __init__(self, type_name: str | None, directives: list, selections: list) -> None:
        self.type_name = type_name
        self.directives = directives
        self.selections = selections


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(source):
            match = _TOKEN_RE.match(source, pos)
            if match is None:
                raise GraphQLError(
                    f'Parse error on "{source[pos : pos + 10]}" at offset {pos}', "PARSE_ERROR"
                )
            pos = match.end()
            kind = match.lastgroup or ""
            if kind != "ws":
                self.tokens.append((kind, match.group()))
        self.i = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else ("eof", "")

    def next(self) -> tuple[str, str]:
        token = self.peek()
        if token[0] == "eof":
            raise GraphQLError("Parse error: unexpected end of document", "PARSE_ERROR")
        self.i += 1
        return token

    def expect(self, value: str) -> None:
        token = self.next()
        if token[1] != value:
            raise GraphQLError(f'Parse error on "{token[1]}": expected "{value}"', "PARSE_ERROR")

    def name(self) -> str:
        kind, value = self.next()
        if kind != "name":
            raise GraphQLError(f'Parse error on "{value}": expected a name', "PARSE_ERROR")
        return value

    def document(self) -> tuple[list[dict[str, Any]], dict[str, list]]:
        operations, fragments = [], {}
        while self.peek()[0] != "eof":
            kind, value = self.peek()
            if value == "{":
                operations.append(
                    {"type": "query", "name": None, "vars": {}, "selections": self.selection_set()}
                )
            elif value in ("query", "mutation", "subscription"):
                self.next()
                op_name = self.name() if self.peek()[0] == "name" else None
                var_defaults = self.variable_definitions() if self.peek()[1] == "(" else {}
                self.directives()
                operations.append(
                    {"type": value, "name": op_name, "vars": var_defaults, "selections": self.selection_set()}
                )
            elif value == "fragment":
                self.next()
                frag_name = self.name()
                self.expect("on")
                self.name()
                self.directives()
                fragments[frag_name] = self.selection_set()
            else:
                raise GraphQLError(f'Parse error on "{value}" ({kind.upper()})', "PARSE_ERROR")
        if not operations:
            raise GraphQLError("No operations provided", "PARSE_ERROR")
        return operations, fragments

    def variable_definitions(self) -> dict[str, Any]:
        defaults: dict[str, Any] = {}
        self.expect("(")
        while self.peek()[1] != ")":
            self.expect("$")
            var = self.name()
            self.expect(":")
            self.type_ref()
            if self.peek()[1] == "=":
                self.next()
                defaults[var] = self.value()
            self.directives()
        self.expect(")")
        return defaults

    def type_ref(self) -> None:
        if self.peek()[1] == "[":
            self.next()
            self.type_ref()
            self.expect("]")
        else:
            self.name()
        if self.peek()[1] == "!":
            self.next()

    def directives(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        while self.peek()[1] == "@":
            self.next()
            name = self.name()
            out.append((name, self.arguments() if self.peek()[1] == "(" else {}))
        return out

    def arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {}
        self.expect("(")
        while self.peek()[1] != ")":
            key = self.name()
            self.expect(":")
            args[key] = self.value()
        self.expect(")")
        return args

    def value(self) -> Any:
        kind, value = self.next()
        if value == "$":
            return _Var(self.name())
        if kind == "number":
            return float(value) if any(c in value for c in ".eE") else int(value)
        if kind == "string":
            return json.loads(value)
        if kind == "block":
            lines = value[3:-3].replace('\\"""', '"""').splitlines()
            return "\n".join(line.strip() for line in lines).strip("\n")
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(value, value)
        if value == "[":
            items = []
            while self.peek()[1] != "]":
                items.append(self.value())
            self.next()
            return items
        if value == "{":
            obj = {}
            while self.peek()[1] != "}":
                key = self.name()
                self.expect(":")
                obj[key] = self.value()
            self.next()
            return obj
        raise GraphQLError(f'Parse error on "{value}": expected a value', "PARSE_ERROR")

    def selection_set(self) -> list:
        self.expect("{")
        selections: list = []
        while self.peek()[1] != "}":
            if self.peek()[1] == "...":
                self.next()
                if self.peek()[1] == "on":
                    self.next()
                    type_name = self.name()
                    selections.append(_Inline(type_name, self.directives(), self.selection_set()))
                elif self.peek()[1] in ("{", "@"):
                    selections.append(_Inline(None, self.directives(), self.selection_set()))
                else:
                    selections.append(_Spread(self.name(), self.directives()))
                continue
            name = self.name()
            alias = None
            if self.peek()[1] == ":":
                self.next()
                alias, name = name, self.name()
            args = self.arguments() if self.peek()[1] == "(" else {}
            directives = self.directives()
            subs = self.selection_set() if self.peek()[1] == "{" else []
            selections.append(_Field(name, alias, args, directives, subs))
        self.next()
        return selections


def _substitute(value: Any, variables: dict[str, Any]) -> Any:
    if isinstance(value, _Var):
        return variables.get(value.name)
    if isinstance(value, list):
        return [_substitute(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, variables) for k, v in value.items()}
    return value


class _Executor:
    """Resolves a selection set against plain dicts; a callable value is a field resolver(args)."""

    def __init__(self, fragments: dict[str, list], variables: dict[str, Any]) -> None:
        self.fragments = fragments
        self.variables = variables
        self.errors: list[dict[str, Any]] = []

    def _included(self, directives: list) -> bool:
        for name, args in directives:
            cond = bool(_substitute(args.get("if"), self.variables))
            if (name == "skip" and cond) or (name == "include" and not cond):
                return False
        return True

    def _flatten(self, selections: list, type_name: str, seen: tuple = ()) -> list[_Field]:
        out: list[_Field] = []
        for sel in selections:
            if not self._included(sel.directives):
                continue
            if isinstance(sel, _Field):
                out.append(sel)
            elif isinstance(sel, _Inline):
                if sel.type_name in (None, type_name):
                    out.extend(self._flatten(sel.selections, type_name, seen))
            else:
                if sel.name not in self.fragments or sel.name in seen:
                    raise GraphQLError(f"Fragment {sel.name} was used, but not defined", "undefinedFragment")
                out.extend(self._flatten(self.fragments[sel.name], type_name, seen + (sel.name,)))
        return out

    def select(self, obj: dict[str, Any], selections: list, path: list[Any]) -> dict[str, Any]:
        type_name = obj.get("__typename", "Query")
        result: dict[str, Any] = {}
        for field in self._flatten(selections, type_name):
            if field.name == "__typename":
                result[field.key] = type_name
                continue
            if field.name not in obj:
                raise GraphQLError(
                    f"Field '{field.name}' doesn't exist on type '{type_name}'",
                    "undefinedField",
                    path + [field.key],
                )
            value = obj[field.name]
            field_path = path + [field.key]
            if callable(value):
                try:
                    value = value(_substitute(field.args, self.variables))
                except GraphQLError as exc:
                    if exc.path is None:
                        exc.path = field_path
                    self.errors.append(exc.as_dict())
                    result[field.key] = None
                    continue
            result[field.key] = self.complete(value, field, field_path)
        return result

    def complete(self, value: Any, field: _Field, path: list[Any]) -> Any:
        if value is None:
            return None
        if isinstance(value, list):
            return [self.complete(v, field, path + [i]) for i, v in enumerate(value)]
        if isinstance(value, dict) and "__typename" in value:
            if not field.selections:
                raise GraphQLError(
                    f"Field must have selections (field '{field.name}' returns {value['__typename']} but "
                    "has no "
                    "selections.",
                    "selectionMismatch",
                    path,
                )
            return self.select(value, field.selections, path)
        if field.selections:
            raise GraphQLError(
                f"Selections can't be made on scalars (field '{field.name}')", "selectionMismatch", path
            )
        return value


def _connection(
    type_name: str, items: list[dict[str, Any]], args: dict[str, Any], field: str
) -> dict[str, Any]:
    first = args.get("first")
    if args.get("last") is not None:
        raise GraphQLError(
            f"The fake GitHub only paginates `{field}` forwards (use `first`/`after`).", "UNSUPPORTED"
        )
    if first is None:
        raise GraphQLError(
            f"You must provide a `first` or `last` value to properly paginate the `{field}` connection.",
            "MISSING_PAGINATION_BOUNDARIES",
        )
    if not isinstance(first, int) or first < 0:
        raise GraphQLError(
            f"`first` on the `{field}` connection cannot be less than zero.", "INVALID_PAGINATION"
        )
    if first > 100:
        raise GraphQLError(
            f"Requesting {first} records on the `{field}` connection exceeds the `first` limit of "
            "100 records.",
            "EXCESSIVE_PAGINATION",
        )
    start = 0
    if args.get("after"):
        try:
            start = int(base64.b64decode(str(args["after"])).decode().split(":", 1)[1]) + 1
        except (ValueError, IndexError, UnicodeDecodeError):
            raise GraphQLError(
                f"`{args['after']}` does not appear to be a valid cursor.", "INVALID_CURSOR_ARGUMENTS"
            ) from None
    page = items[start : start + first]

    def cursor(i: int) -> str:
        return base64.b64encode(f"cursor:{i}".encode()).decode()

    edges = [
        {"__typename": f"{type_name}Edge", "cursor": cursor(start + i), "node": node}
        for i, node in enumerate(page)
    ]
    return {
        "__typename": f"{type_name}Connection",
        "nodes": page,
        "edges": edges,
        "totalCount": len(items),
        "pageInfo": {
            "__typename": "PageInfo",
            "hasNextPage": start + len(page) < len(items),
            "hasPreviousPage": start > 0,
            "startCursor": cursor(start) if page else None,
            "endCursor": cursor(start + len(page) - 1) if page else None,
        },
    }


# --------------------------------------------------------------------------------------------------
# Repository state
# --------------------------------------------------------------------------------------------------


class _Repo:
    def __init__(self, full_name: str, ident: int) -> None:
        self.owner, self.name = full_name.split("/", 1)
        self.full_name = full_name
        self.id = ident
        self.node_id = _node_id("R", "Repository", ident)
        self.issues: list[dict[str, Any]] = []
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.releases: list[dict[str, Any]] = []
        self.commits: list[dict[str, Any]] = []  # chronological, oldest first
        self.tags: dict[str, str | None] = {}
        self.labels: dict[str, dict[str, Any]] = {}
        self.categories: list[dict[str, Any]] = []
        self.discussions: list[dict[str, Any]] = []
        self.next_number = 1  # issues and discussions share GitHub's per-repo number sequence


_DEFAULT_CATEGORIES = (
    ("Announcements", ":mega:", False),
    ("General", ":speech_balloon:", False),
    ("Ideas", ":bulb:", False),
    ("Polls", ":ballot_box:", False),
    ("Q&A", ":pray:", True),
    ("Show and tell", ":raised_hands:", False),
)


class FakeGitHub(LoopbackFake):
    """Loopback GitHub REST + GraphQL API with inspectable in-memory state."""

    DEFAULT_TOKEN = "ghp_faketokpulse0123456789abcdefABCDEF"

    def __init__(
        self,
        tokens: Iterable[str] | str | None = None,
        *,
        repos: Iterable[str] = ("tokpulse/tokpulse",),
        login: str = "tokpulse-bot",
        rate_limit: int = 5000,
        graphql_rate_limit: int = 5000,
        rate_window: float = 3600.0,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        if isinstance(tokens, str):
            tokens = [tokens]
        self.tokens: list[str] = list(tokens or [self.DEFAULT_TOKEN])
        self.login = login
        self.user_id = 1
        self.latency = float(latency)
        self._lock = threading.RLock()
        self._ids = 1000
        self._repos: dict[str, _Repo] = {}
        self._records: list[dict[str, Any]] = []
        self._fails: list[tuple[int, Any]] = []
        self._secondary: list[float] = []
        self._hangs: list[float] = []
        self._rate_window = float(rate_window)
        now = time.time()
        self._limits: dict[str, dict[str, float]] = {
            "core": {"limit": rate_limit, "used": 0, "reset": now + rate_window},
            "graphql": {"limit": graphql_rate_limit, "used": 0, "reset": now + rate_window},
            "search": {"limit": 30, "used": 0, "reset": now + 60},
        }
        self._anon = {"limit": 60, "used": 0, "reset": now + rate_window}
        repo_list = list(repos)
        if not repo_list:
            raise ValueError("at least one repository is required")
        for name in repo_list:
            self.add_repo(name)
        self.repo = repo_list[0]

    # public attributes -------------------------------------------------------------------------
    @property
    def token(self) -> str:
        return self.tokens[0]

    @property
    def api_url(self) -> str:
        return self.root_url

    @property
    def graphql_url(self) -> str:
        return f"{self.root_url}/graphql"

    def _all(self, attr: str) -> list[dict[str, Any]]:
        with self._lock:
            out: list[dict[str, Any]] = []
            for repo in self._repos.values():
                value = getattr(repo, attr)
                if isinstance(value, dict):
                    for items in value.values():
                        out.extend(items)
                else:
                    out.extend(value)
            return out

    @property
    def issues(self) -> list[dict[str, Any]]:
        """All issues (live dicts in API shape), creation order."""
        return self._all("issues")

    @property
    def comments(self) -> list[dict[str, Any]]:
        """All issue comments (API shape; `issue_url` says which issue), creation order per issue."""
        return sorted(self._all("comments"), key=lambda c: c["id"])

    @property
    def releases(self) -> list[dict[str, Any]]:
        """All releases (API shape), creation order."""
        return self._all("releases")

    @property
    def discussions(self) -> list[dict[str, Any]]:
        """All discussions (GraphQL shape plus `repository`: "owner/name"), creation order."""
        return [self._public_discussion(d) for d in self._all("discussions")]

    @property
    def commits(self) -> list[dict[str, Any]]:
        """Commits of the default repo, oldest first (API shape)."""
        with self._lock:
            return list(self._repos[self.repo].commits)

    # seeding (no HTTP, not recorded) ------------------------------------------------------------
    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def _repo_obj(self, repo: str | None) -> _Repo:
        name = repo or self.repo
        with self._lock:
            if name not in self._repos:
                raise KeyError(f"unknown repository {name!r}")
            return self._repos[name]

    def add_repo(self, full_name: str) -> None:
        if full_name.count("/") != 1 or not all(full_name.split("/")):
            raise ValueError("repository names look like 'owner/name'")
        with self._lock:
            if full_name in self._repos:
                return
            repo = _Repo(full_name, self._next_id())
            self._repos[full_name] = repo
            for name, emoji, answerable in _DEFAULT_CATEGORIES:
                self._add_category(repo, name, emoji, answerable)

    def add_discussion_category(self, name: str, repo: str | None = None, *, answerable: bool = False):
        with self._lock:
            return self._add_category(self._repo_obj(repo), name, ":speech_balloon:", answerable)

    def _add_category(self, repo: _Repo, name: str, emoji: str, answerable: bool) -> dict[str, Any]:
        ident = self._next_id()
        category = {
            "__typename": "DiscussionCategory",
            "id": _node_id("DIC", "DiscussionCategory", ident),
            "name": name,
            "slug": re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "q-a",
            "emoji": emoji,
            "description": f"{name} discussions",
            "isAnswerable": answerable,
            "createdAt": _now_iso(),
        }
        repo.categories.append(category)
        return category

    def add_issue(
        self,
        title: str,
        body: str | None = None,
        labels: Iterable[str] = (),
        state: str = "open",
        repo: str | None = None,
        user: str | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            issue = self._new_issue(self._repo_obj(repo), title, body, list(labels), user)
            if state == "closed":
                issue["state"], issue["state_reason"], issue["closed_at"] = "closed", "completed", _now_iso()
            return issue

    def add_comment(self, issue_number: int, body: str, repo: str | None = None) -> dict[str, Any]:
        with self._lock:
            r = self._repo_obj(repo)
            issue = self._find_issue(r, issue_number)
            if issue is None:
                raise KeyError(f"no issue #{issue_number} in {r.full_name}")
            return self._new_comment(r, issue, body)

    def add_commit(
        self,
        message: str,
        sha: str | None = None,
        repo: str | None = None,
        *,
        author: str = "Dev Eloper",
        email: str = "dev@example.com",
        login: str | None = "developer",
        date: str | None = None,
    ) -> str:
        """Append a commit as the newest on the default branch; returns its sha."""
        with self._lock:
            r = self._repo_obj(repo)
            sha = sha or hashlib.sha1(f"{r.full_name}:{len(r.commits)}:{message}".encode()).hexdigest()
            parent = r.commits[-1]["sha"] if r.commits else None
            r.commits.append(
                self._commit_json(r, sha, message, author, email, login, date or _now_iso(), parent)
            )
            return sha

    def set_commits(self, commits: Iterable[dict[str, Any] | str], repo: str | None = None) -> list[str]:
        """Replace the history. Items oldest first: a message string or a dict with `message` and optional
        `sha`, `author`, `email`, `login`, `date`. Returns the shas."""
        with self._lock:
            self._repo_obj(repo).commits.clear()
            shas = []
            for item in commits:
                spec = {"message": item} if isinstance(item, str) else dict(item)
                shas.append(
                    self.add_commit(
                        spec["message"],
                        spec.get("sha"),
                        repo,
                        author=spec.get("author", "Dev Eloper"),
                        email=spec.get("email", "dev@example.com"),
                        login=spec.get("login", "developer"),
                        date=spec.get("date"),
                    )
                )
            return shas

    def add_tag(self, tag: str, sha: str | None = None, repo: str | None = None) -> None:
        """Point `tag` at `sha` (default: the newest commit)."""
        with self._lock:
            r = self._repo_obj(repo)
            r.tags[tag] = sha or (r.commits[-1]["sha"] if r.commits else None)

    def add_release(
        self,
        tag_name: str,
        name: str | None = None,
        body: str = "",
        *,
        draft: bool = False,
        prerelease: bool = False,
        target_commitish: str = "main",
        repo: str | None = None,
    ):
        with self._lock:
            return self._new_release(
                self._repo_obj(repo),
                {
                    "tag_name": tag_name,
                    "name": name,
                    "body": body,
                    "draft": draft,
                    "prerelease": prerelease,
                    "target_commitish": target_commitish,
                },
            )

    # controls ----------------------------------------------------------------------------------
    def set_rate_limit(
        self, limit: int, resource: str = "core", *, used: int = 0, reset_in: float | None = None
    ) -> None:
        """Configure the primary limit of `resource` ("core", "graphql", "search") and start a new window."""
        with self._lock:
            self._limits[resource] = {
                "limit": limit,
                "used": used,
                "reset": time.time() + (self._rate_window if reset_in is None else reset_in),
            }

    def exhaust_rate_limit(self, resource: str = "core", reset_in: float | None = None) -> None:
        with self._lock:
            state = self._limits[resource]
            self.set_rate_limit(int(state["limit"]), resource, used=int(state["limit"]), reset_in=reset_in)

    def rate_limit_state(self, resource: str = "core") -> dict[str, int]:
        with self._lock:
            state = self._window(resource)
            return {
                "limit": int(state["limit"]),
                "used": int(state["used"]),
                "remaining": max(0, int(state["limit"] - state["used"])),
                "reset": int(math.ceil(state["reset"])),
            }

    def fail_next(self, n: int = 1, status: int = 500, body: Any = None) -> None:
        """The next n authenticated requests (within the primary limit) get `status`."""
        with self._lock:
            self._fails.extend([(status, body)] * n)

    def secondary_limit_next(self, n: int = 1, retry_after: float = 60) -> None:
        """The next n authenticated requests get a secondary-rate-limit 403 with `retry-after`."""
        with self._lock:
            self._secondary.extend([float(retry_after)] * n)

    def hang_next(self, n: int = 1, seconds: float = 30.0) -> None:
        """The next n requests stall `seconds` first; if the client gave up meanwhile, nothing is processed
        and the record gets status 499."""
        with self._lock:
            self._hangs.extend([float(seconds)] * n)

    def clear_faults(self) -> None:
        with self._lock:
            self._fails.clear()
            self._secondary.clear()
            self._hangs.clear()

    # records -----------------------------------------------------------------------------------
    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._records)

    def count(self, path: str | None = None, status: int | None = None, method: str | None = None) -> int:
        return len(self._select(path, status, method))

    def last(self, path: str | None = None) -> dict[str, Any] | None:
        found = self._select(path, None, None)
        return found[-1] if found else None

    def reset(self) -> None:
        """Forget records, pending faults and primary-limit usage (repository state is kept)."""
        with self._lock:
            self._records.clear()
            self._fails.clear()
            self._secondary.clear()
            self._hangs.clear()
            now = time.time()
            for state in list(self._limits.values()) + [self._anon]:
                state["used"] = 0
                state["reset"] = now + self._rate_window

    def _select(self, path, status, method) -> list[dict[str, Any]]:
        with self._lock:
            records = list(self._records)
        return [
            r
            for r in records
            if (path is None or r["path"] == path)
            and (status is None or r["status"] == status)
            and (method is None or r["method"] == method.upper())
        ]

    # plumbing ----------------------------------------------------------------------------------
    def _window(self, resource: str) -> dict[str, float]:
        state = self._limits.setdefault(
            resource, {"limit": 5000, "used": 0, "reset": time.time() + self._rate_window}
        )
        if time.time() >= state["reset"]:
            state["used"] = 0
            state["reset"] = time.time() + self._rate_window
        return state

    def _rl_headers(self, state: dict[str, float], resource: str) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(int(state["limit"])),
            "x-ratelimit-remaining": str(max(0, int(state["limit"] - state["used"]))),
            "x-ratelimit-used": str(int(state["used"])),
            "x-ratelimit-reset": str(int(math.ceil(state["reset"]))),
            "x-ratelimit-resource": resource,
        }

    def _authorized(self, request: FakeRequest) -> bool:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() in ("bearer", "token") and credential.strip() in self.tokens

    def _handle(self, request: FakeRequest) -> FakeResponse | None:
        try:
            body = request.json() if request.raw else None
            body_ok = True
        except (ValueError, UnicodeDecodeError):
            body, body_ok = None, False
        resource = "graphql" if request.path.rstrip("/") == "/graphql" else "core"
        request_id = "{:04X}:{:04X}:{:06X}:{:06X}:{:08X}".format(
            *(secrets.randbits(b) for b in (16, 16, 24, 24, 32))
        )
        record: dict[str, Any] = {
            "time": time.time(),
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "status": None,
            "body": body,
            "auth_ok": False,
            "resource": resource,
            "rate_limited": False,
            "fault": None,
            "operation": None,
            "request_id": request_id,
            "headers": dict(request.headers),
        }
        with self._lock:
            self._records.append(record)
            hang = self._hangs.pop(0) if self._hangs else None
        if hang is not None:
            record["fault"] = "hang"
            if not self._sleep(hang) or request.client_gone():
                record["status"] = 499
                return None
        if self.latency > 0 and not self._sleep(self.latency):
            record["status"] = 499
            return None

        response, rl_headers = self._process(request, body, body_ok, resource, record)
        headers = {
            "content-type": "application/json; charset=utf-8",
            "x-github-api-version-selected": "2022-11-28",
            "x-github-media-type": "github.v3; format=json",
            "x-github-request-id": request_id,
        }
        headers.update(rl_headers)
        headers.update(response.headers)
        response.headers = headers
        record["status"] = response.status
        return response

    def _process(self, request: FakeRequest, body: Any, body_ok: bool, resource: str, record: dict[str, Any]):
        is_rate_limit_endpoint = request.path.rstrip("/") == "/rate_limit"
        with self._lock:
            if not self._authorized(request):
                anon = self._anon
                if time.time() >= anon["reset"]:
                    anon["used"], anon["reset"] = 0, time.time() + self._rate_window
                anon["used"] = min(anon["limit"], anon["used"] + 1)
                doc = "https://docs.github.com/graphql" if resource == "graphql" else _DOCS
                return _gh_error(401, "Bad credentials", doc), self._rl_headers(anon, "core")
            record["auth_ok"] = True
            state = self._window(resource)
            if state["used"] >= state["limit"] and not is_rate_limit_endpoint:
                record["rate_limited"] = "primary"
                message = (
                    f"API rate limit exceeded for user ID {self.user_id}. If you reach out to GitHub Support "
                    f"for help, please include the request ID {record['request_id']}."
                )
                if resource == "graphql":
                    response = FakeResponse(
                        403, {"data": None, "errors": [{"type": "RATE_LIMITED", "message": message}]}
                    )
                else:
                    response = _gh_error(
                        403,
                        message,
                        "https://docs.github.com/rest/overview/rate-limits-for-the-"
                        "rest-api#about-primary-rate-limits",
                    )
                return response, self._rl_headers(state, resource)
            if self._fails and not is_rate_limit_endpoint:
                status, fail_body = self._fails.pop(0)
                record["fault"] = "fail"
                response = FakeResponse(
                    status,
                    fail_body
                    if fail_body is not None
                    else {"message": "Server Error", "documentation_url": _DOCS, "status": str(status)},
                )
                return response, self._rl_headers(state, resource)
            if self._secondary and not is_rate_limit_endpoint:
                wait = self._secondary.pop(0)
                record["fault"] = "secondary"
                record["rate_limited"] = "secondary"
                response = _gh_error(
                    403,
                    "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
                    "again. "
                    "If you reach out to GitHub Support for help, please include the request ID "
                    f"{record['request_id']}.",
                    "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
                )
                response.headers["retry-after"] = str(int(math.ceil(wait)))
                return response, self._rl_headers(state, resource)
            if not is_rate_limit_endpoint:
                state["used"] += 1
            headers = self._rl_headers(state, resource)
        if not body_ok:
            return _gh_error(400, "Problems parsing JSON"), headers
        try:
            if resource == "graphql":
                if request.method != "POST":
                    return _gh_error(404, "Not Found", "https://docs.github.com/graphql"), headers
                return self._graphql(body, record), headers
            return self._rest(request, body), headers
        except _Fail as fail:
            return fail.response, headers

    # REST ---------------------------------------------------------------------------------------
    _ROUTES: list[tuple[str, re.Pattern[str], str]] = [
        (m, re.compile(p), h)
        for m, p, h in [
            ("GET", r"^/rate_limit$", "_rate_limit"),
            ("GET", r"^/user$", "_get_user"),
            ("GET", r"^/repos/([^/]+)/([^/]+)$", "_get_repo"),
            ("GET", r"^/repos/([^/]+)/([^/]+)/issues$", "_list_issues"),
            ("POST", r"^/repos/([^/]+)/([^/]+)/issues$", "_create_issue"),
            ("GET", r"^/repos/([^/]+)/([^/]+)/issues/(\d+)$", "_get_issue"),
            ("PATCH", r"^/repos/([^/]+)/([^/]+)/issues/(\d+)$", "_update_issue"),
            ("GET", r"^/repos/([^/]+)/([^/]+)/issues/(\d+)/comments$", "_list_comments"),
            ("POST", r"^/repos/([^/]+)/([^/]+)/issues/(\d+)/comments$", "_create_comment"),
            ("GET", r"^/repos/([^/]+)/([^/]+)/issues/comments/(\d+)$", "_get_comment"),
            ("PATCH", r"^/repos/([^/]+)/([^/]+)/issues/comments/(\d+)$", "_update_comment"),
            ("GET", r"^/repos/([^/]+)/([^/]+)/releases$", "_list_releases"),
            ("POST", r"^/repos/([^/]+)/([^/]+)/releases$", "_create_release"),
            ("GET", r"^/repos/([^/]+)/([^/]+)/releases/latest$", "_latest_release"),
            ("GET", r"^/repos/([^/]+)/([^/]+)/releases/tags/(.+)$", "_release_by_tag"),
            ("GET", r"^/repos/([^/]+)/([^/]+)/releases/(\d+)$", "_get_release"),
            ("PATCH", r"^/repos/([^/]+)/([^/]+)/releases/(\d+)$", "_update_release"),
            ("GET", r"^/repos/([^/]+)/([^/]+)/commits$", "_list_commits"),
            ("GET", r"^/repos/([^/]+)/([^/]+)/compare/(.+)$", "_compare"),
        ]
    ]

    def _rest(self, request: FakeRequest, body: Any) -> FakeResponse:
        path = request.path.rstrip("/") or "/"
        for method, pattern, handler in self._ROUTES:
            match = pattern.match(path)
            if match is None or method != request.method:
                continue
            groups = match.groups()
            repo = None
            if len(groups) >= 2:
                repo = self._repos.get(f"{groups[0]}/{groups[1]}")
                if repo is None:
                    return _gh_error(404, "Not Found", f"{_DOCS}/repos/repos#get-a-repository")
                groups = groups[2:]
            fn: Callable[..., FakeResponse] = getattr(self, handler)
            with self._lock:
                return fn(request, body, repo, *groups) if repo is not None else fn(request, body, *groups)
        return _gh_error(404, "Not Found")

    def _user(self, login: str | None = None) -> dict[str, Any]:
        login = login or self.login
        ident = int(hashlib.sha1(login.encode()).hexdigest()[:6], 16)
        return {
            "login": login,
            "id": ident,
            "node_id": _node_id("U", "User", ident),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{ident}?v=4",
            "url": f"{self.api_url}/users/{login}",
            "html_url": f"{_WEB}/{login}",
            "type": "Bot" if login.endswith("[bot]") else "User",
            "site_admin": False,
        }

    def _repo_url(self, repo: _Repo) -> str:
        return f"{self.api_url}/repos/{repo.full_name}"

    def _repo_json(self, repo: _Repo) -> dict[str, Any]:
        return {
            "id": repo.id,
            "node_id": repo.node_id,
            "name": repo.name,
            "full_name": repo.full_name,
            "private": False,
            "owner": self._user(repo.owner),
            "html_url": f"{_WEB}/{repo.full_name}",
            "description": None,
            "fork": False,
            "url": self._repo_url(repo),
            "default_branch": "main",
            "has_issues": True,
            "has_discussions": True,
            "archived": False,
            "disabled": False,
            "open_issues_count": sum(1 for i in repo.issues if i["state"] == "open"),
            "permissions": {"admin": True, "maintain": True, "push": True, "triage": True, "pull": True},
        }

    def _paginate(self, request: FakeRequest, items: list[Any]) -> FakeResponse:
        try:
            per_page = int(request.query.get("per_page") or 30)
            page = int(request.query.get("page") or 1)
        except ValueError:
            raise _Fail(
                _gh_error(
                    422,
                    "Validation Failed",
                    errors=[{"resource": "Search", "field": "per_page", "code": "invalid"}],
                )
            ) from None
        per_page = min(100, max(1, per_page))
        page = max(1, page)
        last = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        links = []

        def link(target: int, rel: str) -> str:
            params = dict(request.query)
            params["per_page"], params["page"] = str(per_page), str(target)
            return f'<{self.api_url}{quote(request.path)}?{urlencode(params)}>; rel="{rel}"'

        if page > 1:
            links.append(link(min(page - 1, last), "prev"))
        if page < last:
            links.append(link(page + 1, "next"))
            links.append(link(last, "last"))
        if page > 1:
            links.append(link(1, "first"))
        if links:
            headers["link"] = ", ".join(links)
        return FakeResponse(200, chunk, headers)

    def _rate_limit(self, request: FakeRequest, body: Any) -> FakeResponse:
        resources = {}
        for name in ("core", "graphql", "search"):
            state = self._window(name)
            resources[name] = {
                "limit": int(state["limit"]),
                "used": int(state["used"]),
                "remaining": max(0, int(state["limit"] - state["used"])),
                "reset": int(math.ceil(state["reset"])),
                "resource": name,
            }
        return FakeResponse(200, {"resources": resources, "rate": resources["core"]})

    def _get_user(self, request: FakeRequest, body: Any) -> FakeResponse:
        return FakeResponse(200, self._user())

    def _get_repo(self, request: FakeRequest, body: Any, repo: _Repo) -> FakeResponse:
        return FakeResponse(200, self._repo_json(repo))

    # issues
    def _label(self, repo: _Repo, name: str) -> dict[str, Any]:
        if name not in repo.labels:
            ident = self._next_id()
            repo.labels[name] = {
                "id": ident,
                "node_id": _node_id("LA", "Label", ident),
                "url": f"{self._repo_url(repo)}/labels/{quote(name)}",
                "name": name,
                "color": hashlib.md5(name.encode()).hexdigest()[:6],
                "default": False,
                "description": None,
            }
        return dict(repo.labels[name])

    def _label_names(self, raw: Any) -> list[str]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise _Fail(
                _gh_error(
                    422, f"Invalid request.\n\nFor 'properties/labels', {json.dumps(raw)} is not an array."
                )
            )
        names = []
        for item in raw:
            name = item.get("name") if isinstance(item, dict) else item
            if not isinstance(name, str) or not name.strip():
                raise _Fail(_validation_failed("Label", "name", "invalid", value=item))
            names.append(name)
        return names

    def _new_issue(
        self,
        repo: _Repo,
        title: str,
        body: str | None,
        labels: list[str],
        user: str | None = None,
        assignees: list[str] | None = None,
    ) -> dict[str, Any]:
        number = repo.next_number
        repo.next_number += 1
        ident = self._next_id()
        now = _now_iso()
        url = f"{self._repo_url(repo)}/issues/{number}"
        issue = {
            "url": url,
            "repository_url": self._repo_url(repo),
            "labels_url": f"{url}/labels{{/name}}",
            "comments_url": f"{url}/comments",
            "events_url": f"{url}/events",
            "html_url": f"{_WEB}/{repo.full_name}/issues/{number}",
            "id": ident,
            "node_id": _node_id("I", "Issue", ident),
            "number": number,
            "title": title,
            "user": self._user(user),
            "labels": [self._label(repo, name) for name in dict.fromkeys(labels)],
            "state": "open",
            "locked": False,
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "comments": 0,
            "created_at": now,
            "updated_at": now,
            "closed_at": None,
            "author_association": "OWNER",
            "active_lock_reason": None,
            "body": body,
            "closed_by": None,
            "state_reason": None,
            "reactions": {"url": f"{url}/reactions", "total_count": 0},
            "timeline_url": f"{url}/timeline",
        }
        if assignees:
            issue["assignees"] = [self._user(a) for a in assignees]
            issue["assignee"] = issue["assignees"][0]
        repo.issues.append(issue)
        repo.comments[number] = []
        return issue

    @staticmethod
    def _find_issue(repo: _Repo, number: int | str) -> dict[str, Any] | None:
        return next((i for i in repo.issues if i["number"] == int(number)), None)

    def _issue_or_404(self, repo: _Repo, number: str) -> dict[str, Any]:
        issue = self._find_issue(repo, number)
        if issue is None:
            raise _Fail(_gh_error(404, "Not Found", f"{_DOCS}/issues/issues#get-an-issue"))
        return issue

    def _list_issues(self, request: FakeRequest, body: Any, repo: _Repo) -> FakeResponse:
        query = request.query
        state = query.get("state", "open")
        if state not in ("open", "closed", "all"):
            return _validation_failed("Issue", "state", "invalid", value=state)
        items = [i for i in repo.issues if state == "all" or i["state"] == state]
        if query.get("labels"):
            wanted = {name.strip() for name in query["labels"].split(",") if name.strip()}
            items = [i for i in items if wanted <= {label["name"] for label in i["labels"]}]
        if query.get("creator"):
            items = [i for i in items if i["user"]["login"] == query["creator"]]
        if query.get("since"):
            items = [i for i in items if i["updated_at"] >= query["since"]]
        sort = query.get("sort", "created")
        key = {"created": "created_at", "updated": "updated_at", "comments": "comments"}.get(sort)
        if key is None:
            return _validation_failed("Issue", "sort", "invalid", value=sort)
        reverse = query.get("direction", "desc") != "asc"
        items = sorted(items, key=lambda i: (i[key], i["number"]), reverse=reverse)
        return self._paginate(request, items)

    def _create_issue(self, request: FakeRequest, body: Any, repo: _Repo) -> FakeResponse:
        if not isinstance(body, dict):
            return _gh_error(400, "Problems parsing JSON")
        title = body.get("title")
        if title is None:
            return _gh_error(422, 'Invalid request.\n\n"title" wasn\'t supplied.')
        if not isinstance(title, (str, int)) or not str(title).strip():
            return _validation_failed("Issue", "title")
        if body.get("body") is not None and not isinstance(body["body"], str):
            return _gh_error(
                422,
                "Invalid request.\n\nFor 'properties/body', {} is not a string.".format(
                    json.dumps(body["body"])
                ),
            )
        assignees = body.get("assignees") or ([body["assignee"]] if body.get("assignee") else [])
        issue = self._new_issue(
            repo, str(title), body.get("body"), self._label_names(body.get("labels")), assignees=assignees
        )
        return FakeResponse(201, issue, {"location": issue["url"]})

    def _get_issue(self, request: FakeRequest, body: Any, repo: _Repo, number: str) -> FakeResponse:
        return FakeResponse(200, self._issue_or_404(repo, number))

    def _update_issue(self, request: FakeRequest, body: Any, repo: _Repo, number: str) -> FakeResponse:
        issue = self._issue_or_404(repo, number)
        if not isinstance(body, dict):
            return _gh_error(400, "Problems parsing JSON")
        if "title" in body and (not isinstance(body["title"], str) or not body["title"].strip()):
            return _validation_failed("Issue", "title")
        state = body.get("state")
        if state is not None and state not in ("open", "closed"):
            return _validation_failed("Issue", "state", "invalid", value=state)
        reason = body.get("state_reason")
        if reason is not None and reason not in ("completed", "not_planned", "reopened", "duplicate"):
            return _validation_failed("Issue", "state_reason", "invalid", value=reason)
        labels = self._label_names(body["labels"]) if "labels" in body else None
        if "title" in body:
            issue["title"] = body["title"]
        if "body" in body:
            issue["body"] = body["body"]
        if labels is not None:
            issue["labels"] = [self._label(repo, name) for name in dict.fromkeys(labels)]
        if "assignees" in body:
            issue["assignees"] = [self._user(a) for a in body["assignees"] or []]
            issue["assignee"] = issue["assignees"][0] if issue["assignees"] else None
        now = _now_iso()
        if state == "closed" and issue["state"] != "closed":
            issue.update(
                state="closed", closed_at=now, closed_by=self._user(), state_reason=reason or "completed"
            )
        elif state == "open" and issue["state"] != "open":
            issue.update(state="open", closed_at=None, closed_by=None, state_reason="reopened")
        elif reason is not None:
            issue["state_reason"] = reason
        issue["updated_at"] = now
        return FakeResponse(200, issue)

    # comments
    def _new_comment(self, repo: _Repo, issue: dict[str, Any], body: str) -> dict[str, Any]:
        ident = self._next_id()
        now = _now_iso()
        comment = {
            "url": f"{self._repo_url(repo)}/issues/comments/{ident}",
            "html_url": f"{issue['html_url']}#issuecomment-{ident}",
            "issue_url": issue["url"],
            "id": ident,
            "node_id": _node_id("IC", "IssueComment", ident),
            "user": self._user(),
            "created_at": now,
            "updated_at": now,
            "author_association": "OWNER",
            "body": body,
            "reactions": {
                "url": f"{self._repo_url(repo)}/issues/comments/{ident}/reactions",
                "total_count": 0,
            },
        }
        repo.comments.setdefault(issue["number"], []).append(comment)
        issue["comments"] += 1
        issue["updated_at"] = now
        return comment

    def _list_comments(self, request: FakeRequest, body: Any, repo: _Repo, number: str) -> FakeResponse:
        issue = self._issue_or_404(repo, number)
        items = list(repo.comments.get(issue["number"], []))
        if request.query.get("since"):
            items = [c for c in items if c["updated_at"] >= request.query["since"]]
        return self._paginate(request, items)

    def _create_comment(self, request: FakeRequest, body: Any, repo: _Repo, number: str) -> FakeResponse:
        issue = self._issue_or_404(repo, number)
        if not isinstance(body, dict) or body.get("body") is None:
            return _gh_error(422, 'Invalid request.\n\n"body" wasn\'t supplied.')
        if not isinstance(body["body"], str) or not body["body"].strip():
            return _validation_failed("IssueComment", "body")
        comment = self._new_comment(repo, issue, body["body"])
        return FakeResponse(201, comment, {"location": comment["url"]})

    def _comment_or_404(self, repo: _Repo, ident: str) -> dict[str, Any]:
        for items in repo.comments.values():
            for comment in items:
                if comment["id"] == int(ident):
                    return comment
        raise _Fail(_gh_error(404, "Not Found", f"{_DOCS}/issues/comments#get-an-issue-comment"))

    def _get_comment(self, request: FakeRequest, body: Any, repo: _Repo, ident: str) -> FakeResponse:
        return FakeResponse(200, self._comment_or_404(repo, ident))

    def _update_comment(self, request: FakeRequest, body: Any, repo: _Repo, ident: str) -> FakeResponse:
        comment = self._comment_or_404(repo, ident)
        if not isinstance(body, dict) or not isinstance(body.get("body"), str) or not body["body"].strip():
            return _validation_failed("IssueComment", "body")
        comment["body"] = body["body"]
        comment["updated_at"] = _now_iso()
        return FakeResponse(200, comment)

    # releases
    def _resolve_ref(self, repo: _Repo, ref: str) -> int | None:
        """Index into repo.commits for a sha / sha prefix / tag / branch name, else None."""
        if not repo.commits:
            return None
        if ref in ("main", "HEAD", "master") or ref == "refs/heads/main":
            return len(repo.commits) - 1
        if ref in repo.tags or ref.removeprefix("refs/tags/") in repo.tags:
            sha = repo.tags.get(ref) or repo.tags.get(ref.removeprefix("refs/tags/"))
            ref = sha or ""
        if len(ref) >= 4:
            for i, commit in enumerate(repo.commits):
                if commit["sha"].startswith(ref.lower()):
                    return i
        return None

    def _new_release(self, repo: _Repo, spec: dict[str, Any]) -> dict[str, Any]:
        tag = spec["tag_name"]
        target = spec.get("target_commitish") or "main"
        if tag not in repo.tags:
            idx = self._resolve_ref(repo, target)
            repo.tags[tag] = repo.commits[idx]["sha"] if idx is not None else None
        ident = self._next_id()
        now = _now_iso()
        draft = bool(spec.get("draft"))
        url = f"{self._repo_url(repo)}/releases/{ident}"
        release = {
            "url": url,
            "assets_url": f"{url}/assets",
            "upload_url": f"{self.api_url}/repos/{repo.full_name}/releases/{ident}/assets{{?name,label}}",
            "html_url": f"{_WEB}/{repo.full_name}/releases/tag/{quote(tag)}",
            "id": ident,
            "author": self._user(),
            "node_id": _node_id("RE", "Release", ident),
            "tag_name": tag,
            "target_commitish": target,
            "name": spec.get("name") if spec.get("name") is not None else tag,
            "draft": draft,
            "immutable": False,
            "prerelease": bool(spec.get("prerelease")),
            "created_at": now,
            "updated_at": now,
            "published_at": None if draft else now,
            "assets": [],
            "tarball_url": f"{self._repo_url(repo)}/tarball/{quote(tag)}",
            "zipball_url": f"{self._repo_url(repo)}/zipball/{quote(tag)}",
            "body": spec.get("body") or "",
        }
        repo.releases.append(release)
        return release

    def _list_releases(self, request: FakeRequest, body: Any, repo: _Repo) -> FakeResponse:
        return self._paginate(request, list(reversed(repo.releases)))

    def _create_release(self, request: FakeRequest, body: Any, repo: _Repo) -> FakeResponse:
        if not isinstance(body, dict):
            return _gh_error(400, "Problems parsing JSON")
        tag = body.get("tag_name")
        if tag is None:
            return _gh_error(422, 'Invalid request.\n\n"tag_name" wasn\'t supplied.')
        if not isinstance(tag, str) or not tag.strip() or any(c in tag for c in " ~^:?*[\\"):
            return _validation_failed("Release", "tag_name", "invalid")
        if any(r["tag_name"] == tag for r in repo.releases):
            return _validation_failed("Release", "tag_name", "already_exists")
        for key in ("draft", "prerelease"):
            if key in body and not isinstance(body[key], bool):
                return _gh_error(
                    422,
                    f"Invalid request.\n\nFor 'properties/{key}', {json.dumps(body[key])} is not a boolean.",
                )
        target = body.get("target_commitish") or "main"
        if tag not in repo.tags and repo.commits and self._resolve_ref(repo, target) is None:
            return _validation_failed("Release", "target_commitish", "invalid")
        release = self._new_release(repo, body)
        return FakeResponse(201, release, {"location": release["url"]})

    def _release_or_404(self, repo: _Repo, ident: str) -> dict[str, Any]:
        release = next((r for r in repo.releases if r["id"] == int(ident)), None)
        if release is None:
            raise _Fail(_gh_error(404, "Not Found", f"{_DOCS}/releases/releases#get-a-release"))
        return release

    def _get_release(self, request: FakeRequest, body: Any, repo: _Repo, ident: str) -> FakeResponse:
        return FakeResponse(200, self._release_or_404(repo, ident))

    def _release_by_tag(self, request: FakeRequest, body: Any, repo: _Repo, tag: str) -> FakeResponse:
        # like GitHub, drafts are not reachable by tag
        release = next((r for r in repo.releases if r["tag_name"] == tag and not r["draft"]), None)
        if release is None:
            return _gh_error(404, "Not Found", f"{_DOCS}/releases/releases#get-a-release-by-tag-name")
        return FakeResponse(200, release)

    def _latest_release(self, request: FakeRequest, body: Any, repo: _Repo) -> FakeResponse:
        published = [r for r in repo.releases if not r["draft"] and not r["prerelease"]]
        if not published:
            return _gh_error(404, "Not Found", f"{_DOCS}/releases/releases#get-the-latest-release")
        return FakeResponse(200, max(published, key=lambda r: (r["published_at"] or "", r["id"])))

    def _update_release(self, request: FakeRequest, body: Any, repo: _Repo, ident: str) -> FakeResponse:
        release = self._release_or_404(repo, ident)
        if not isinstance(body, dict):
            return _gh_error(400, "Problems parsing JSON")
        if "tag_name" in body:
            tag = body["tag_name"]
            if not isinstance(tag, str) or not tag.strip():
                return _validation_failed("Release", "tag_name", "invalid")
            if any(r["tag_name"] == tag and r is not release for r in repo.releases):
                return _validation_failed("Release", "tag_name", "already_exists")
        for key in ("draft", "prerelease"):
            if key in body and not isinstance(body[key], bool):
                return _gh_error(
                    422,
                    f"Invalid request.\n\nFor 'properties/{key}', {json.dumps(body[key])} is not a boolean.",
                )
        now = _now_iso()
        for key in ("name", "body", "target_commitish", "prerelease"):
            if key in body:
                release[key] = body[key]
        if "tag_name" in body and body["tag_name"] != release["tag_name"]:
            tag = body["tag_name"]
            if tag not in repo.tags:
                idx = self._resolve_ref(repo, release["target_commitish"])
                repo.tags[tag] = repo.commits[idx]["sha"] if idx is not None else None
            release["tag_name"] = tag
            release["html_url"] = f"{_WEB}/{repo.full_name}/releases/tag/{quote(tag)}"
            release["tarball_url"] = f"{self._repo_url(repo)}/tarball/{quote(tag)}"
            release["zipball_url"] = f"{self._repo_url(repo)}/zipball/{quote(tag)}"
        if "draft" in body:
            if release["draft"] and not body["draft"]:
                release["published_at"] = now
            release["draft"] = body["draft"]
        release["updated_at"] = now
        return FakeResponse(200, release)

    # commits
    def _commit_json(
        self,
        repo: _Repo,
        sha: str,
        message: str,
        author: str,
        email: str,
        login: str | None,
        date: str,
        parent: str | None,
    ) -> dict[str, Any]:
        person = {"name": author, "email": email, "date": date}
        url = f"{self._repo_url(repo)}/commits/{sha}"
        tree = hashlib.sha1(f"tree:{sha}".encode()).hexdigest()
        return {
            "sha": sha,
            "node_id": _node_id("C", "Commit", sha),
            "commit": {
                "author": dict(person),
                "committer": dict(person),
                "message": message,
                "tree": {"sha": tree, "url": f"{self._repo_url(repo)}/git/trees/{tree}"},
                "url": f"{self._repo_url(repo)}/git/commits/{sha}",
                "comment_count": 0,
                "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None},
            },
            "url": url,
            "html_url": f"{_WEB}/{repo.full_name}/commit/{sha}",
            "comments_url": f"{url}/comments",
            "author": self._user(login) if login else None,
            "committer": self._user(login) if login else None,
            "parents": [
                {
                    "sha": parent,
                    "url": f"{self._repo_url(repo)}/commits/{parent}",
                    "html_url": f"{_WEB}/{repo.full_name}/commit/{parent}",
                }
            ]
            if parent
            else [],
        }

    def _list_commits(self, request: FakeRequest, body: Any, repo: _Repo) -> FakeResponse:
        if not repo.commits:
            return _gh_error(409, "Git Repository is empty.", f"{_DOCS}/commits/commits#list-commits")
        head = len(repo.commits) - 1
        if request.query.get("sha"):
            found = self._resolve_ref(repo, request.query["sha"])
            if found is None:
                return _gh_error(
                    404,
                    "No commit found for SHA: " + request.query["sha"],
                    f"{_DOCS}/commits/commits#list-commits",
                )
            head = found
        items = list(reversed(repo.commits[: head + 1]))
        if request.query.get("since"):
            items = [c for c in items if c["commit"]["committer"]["date"] >= request.query["since"]]
        if request.query.get("until"):
            items = [c for c in items if c["commit"]["committer"]["date"] <= request.query["until"]]
        return self._paginate(request, items)

    def _compare(self, request: FakeRequest, body: Any, repo: _Repo, basehead: str) -> FakeResponse:
        if "..." in basehead:
            base, head = basehead.split("...", 1)
        elif ".." in basehead:
            base, head = basehead.split("..", 1)
        else:
            return _gh_error(404, "Not Found", f"{_DOCS}/commits/commits#compare-two-commits")
        bi, hi = self._resolve_ref(repo, base), self._resolve_ref(repo, head)
        if bi is None or hi is None:
            return _gh_error(404, "Not Found", f"{_DOCS}/commits/commits#compare-two-commits")
        ahead = max(0, hi - bi)
        behind = max(0, bi - hi)
        status = "identical" if bi == hi else ("ahead" if hi > bi else "behind")
        base_commit = repo.commits[bi]
        merge_base = repo.commits[min(bi, hi)]
        commits = repo.commits[bi + 1 : hi + 1] if hi > bi else []
        web = f"{_WEB}/{repo.full_name}/compare/{base}...{head}"
        return FakeResponse(
            200,
            {
                "url": f"{self._repo_url(repo)}/compare/{base}...{head}",
                "html_url": web,
                "permalink_url": f"{_WEB}/{repo.full_name}/compare/{base_commit['sha'][:7]}..."
                f"{repo.commits[hi]['sha'][:7]}",
                "diff_url": f"{web}.diff",
                "patch_url": f"{web}.patch",
                "base_commit": base_commit,
                "merge_base_commit": merge_base,
                "status": status,
                "ahead_by": ahead,
                "behind_by": behind,
                "total_commits": len(commits),
                "commits": commits[:250],
                "files": [],
            },
        )

    # GraphQL ------------------------------------------------------------------------------------
    def _public_discussion(self, d: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in d.items() if k not in ("__typename", "repository_name")}
        out["category"] = {k: v for k, v in d["category"].items() if k != "__typename"}
        out["author"] = {"login": d["author"]["login"]}
        out["repository"] = d["repository_name"]
        return out

    def _graphql(self, body: Any, record: dict[str, Any]) -> FakeResponse:
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return FakeResponse(
                200,
                {
                    "data": None,
                    "errors": [
                        {
                            "type": "INVALID",
                            "message": "A query attribute must be specified and must be a string.",
                        }
                    ],
                },
            )
        variables = body.get("variables") or {}
        if not isinstance(variables, dict):
            return FakeResponse(
                200, {"data": None, "errors": [{"type": "INVALID", "message": "Variables are invalid JSON."}]}
            )
        try:
            operations, fragments = _Parser(body["query"]).document()
            wanted = body.get("operationName")
            if wanted:
                operation = next((op for op in operations if op["name"] == wanted), None)
                if operation is None:
                    raise GraphQLError(f'No operation named "{wanted}"', "INVALID")
            elif len(operations) > 1:
                raise GraphQLError("An operation name is required", "INVALID")
            else:
                operation = operations[0]
            if operation["type"] == "subscription":
                raise GraphQLError("Subscriptions are not supported", "INVALID")
            merged = dict(operation["vars"])
            merged.update(variables)
            executor = _Executor(fragments, merged)
            record["operation"] = ",".join(
                f.name for f in executor._flatten(operation["selections"], "Query") if f.name != "__typename"
            )
            with self._lock:
                root = self._mutation_root() if operation["type"] == "mutation" else self._query_root()
                data = executor.select(root, operation["selections"], [])
        except GraphQLError as exc:
            return FakeResponse(200, {"data": None, "errors": [exc.as_dict()]})
        payload: dict[str, Any] = {"data": data}
        if executor.errors:
            payload["errors"] = executor.errors
        return FakeResponse(200, payload)

    def _query_root(self) -> dict[str, Any]:
        def repository(args: dict[str, Any]) -> dict[str, Any]:
            full = f"{args.get('owner')}/{args.get('name')}"
            repo = self._repos.get(full)
            if repo is None:
                raise GraphQLError(f"Could not resolve to a Repository with the name '{full}'.", "NOT_FOUND")
            return self._repo_node(repo)

        state = self._window("graphql")
        viewer = self._user()
        return {
            "__typename": "Query",
            "repository": repository,
            "viewer": {
                "__typename": "User",
                "login": viewer["login"],
                "id": viewer["node_id"],
                "databaseId": viewer["id"],
                "url": viewer["html_url"],
            },
            "rateLimit": {
                "__typename": "RateLimit",
                "limit": int(state["limit"]),
                "cost": 1,
                "remaining": max(0, int(state["limit"] - state["used"])),
                "used": int(state["used"]),
                "resetAt": _now_iso(state["reset"]),
                "nodeCount": 0,
            },
        }

    def _discussion_node(self, repo: _Repo, d: dict[str, Any]) -> dict[str, Any]:
        node = dict(d)
        node.pop("repository_name", None)
        node["comments"] = lambda args: _connection("DiscussionComment", [], args, "comments")
        node["repository"] = {
            "__typename": "Repository",
            "id": repo.node_id,
            "name": repo.name,
            "nameWithOwner": repo.full_name,
            "url": f"{_WEB}/{repo.full_name}",
        }
        return node

    def _repo_node(self, repo: _Repo) -> dict[str, Any]:
        def discussions(args: dict[str, Any]) -> dict[str, Any]:
            items = list(reversed(repo.discussions))  # newest first
            if args.get("categoryId"):
                items = [d for d in items if d["category"]["id"] == args["categoryId"]]
            order = args.get("orderBy") or {}
            if isinstance(order, dict) and order.get("direction") == "ASC":
                items.reverse()
            return _connection(
                "Discussion", [self._discussion_node(repo, d) for d in items], args, "discussions"
            )

        def discussion(args: dict[str, Any]) -> dict[str, Any]:
            found = next((d for d in repo.discussions if d["number"] == args.get("number")), None)
            if found is None:
                raise GraphQLError(
                    f"Could not resolve to a Discussion with the number of {args.get('number')}.", "NOT_FOUND"
                )
            return self._discussion_node(repo, found)

        owner = self._user(repo.owner)
        return {
            "__typename": "Repository",
            "id": repo.node_id,
            "databaseId": repo.id,
            "name": repo.name,
            "nameWithOwner": repo.full_name,
            "url": f"{_WEB}/{repo.full_name}",
            "hasDiscussionsEnabled": True,
            "owner": {"__typename": "User", "login": owner["login"], "id": owner["node_id"]},
            "discussionCategories": lambda args: _connection(
                "DiscussionCategory", list(repo.categories), args, "discussionCategories"
            ),
            "discussions": discussions,
            "discussion": discussion,
        }

    def _mutation_root(self) -> dict[str, Any]:
        def create_discussion(args: dict[str, Any]) -> dict[str, Any]:
            data = args.get("input")
            if not isinstance(data, dict):
                raise GraphQLError(
                    "Argument 'input' on Field 'createDiscussion' has an invalid value. Expected type "
                    "'CreateDiscussionInput!'.",
                    "argumentLiteralsIncompatible",
                )
            for key in ("repositoryId", "categoryId", "title", "body"):
                if data.get(key) is None:
                    raise GraphQLError(
                        f"Argument '{key}' on InputObject 'CreateDiscussionInput' is required. "
                        "Expected type String!",
                        "missingRequiredInputObjectAttribute",
                    )
            repo = next((r for r in self._repos.values() if r.node_id == data["repositoryId"]), None)
            if repo is None:
                raise GraphQLError(
                    f"Could not resolve to a node with the global id of '{data['repositoryId']}'", "NOT_FOUND"
                )
            category = next((c for c in repo.categories if c["id"] == data["categoryId"]), None)
            if category is None:
                raise GraphQLError(
                    f"Could not resolve to a node with the global id of '{data['categoryId']}'", "NOT_FOUND"
                )
            if not str(data["title"]).strip():
                raise GraphQLError("Title can't be blank", "UNPROCESSABLE")
            number = repo.next_number
            repo.next_number += 1
            ident = self._next_id()
            now = _now_iso()
            discussion = {
                "__typename": "Discussion",
                "id": _node_id("D", "Discussion", ident),
                "databaseId": ident,
                "number": number,
                "title": str(data["title"]),
                "body": str(data["body"]),
                "url": f"{_WEB}/{repo.full_name}/discussions/{number}",
                "createdAt": now,
                "updatedAt": now,
                "closed": False,
                "locked": False,
                "answer": None,
                "upvoteCount": 0,
                "author": {"__typename": "User", "login": self.login},
                "category": category,
                "repository_name": repo.full_name,
            }
            repo.discussions.append(discussion)
            return {
                "__typename": "CreateDiscussionPayload",
                "clientMutationId": data.get("clientMutationId"),
                "discussion": self._discussion_node(repo, discussion),
            }

        return {"__typename": "Mutation", "createDiscussion": create_discussion}
