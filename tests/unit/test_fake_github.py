"""FakeGitHub driven over HTTP with httpx (REST, pagination, GraphQL discussions, limits, faults)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import httpx
import pytest

from tests.fakes import fixtures
from tests.fakes.github_server import FakeGitHub

fake_github = fixtures.fake_github  # the shared fixture (also registered by the lead via pytest_plugins)

RATE_HEADERS = (
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-used",
    "x-ratelimit-reset",
    "x-ratelimit-resource",
)


@pytest.fixture
def gh(fake_github: FakeGitHub):
    with httpx.Client(
        base_url=fake_github.api_url, headers={"Authorization": f"Bearer {fake_github.token}"}, timeout=5
    ) as http:
        yield fake_github, http


def repo_path(fake: FakeGitHub, suffix: str = "") -> str:
    return f"/repos/{fake.repo}{suffix}"


# --- auth ---------------------------------------------------------------------------------------


def test_auth_missing_or_wrong_is_401_and_both_schemes_work(fake_github):
    url = f"{fake_github.api_url}{repo_path(fake_github, '/issues')}"
    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.json() == {
        "message": "Bad credentials",
        "documentation_url": "https://docs.github.com/rest",
        "status": "401",
    }
    assert httpx.get(url, headers={"Authorization": "Bearer ghp_wrong"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"token {fake_github.token}"}).status_code == 200
    assert httpx.get(url, headers={"Authorization": f"Bearer {fake_github.token}"}).status_code == 200

    request = urllib.request.Request(url, headers={"Authorization": "token nope"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(request, timeout=5)
    assert exc.value.code == 401
    assert [r["auth_ok"] for r in fake_github.requests] == [False, False, True, True, False]


# --- issues -------------------------------------------------------------------------------------


def test_create_issues_and_paginate_with_link_headers(gh):
    fake, http = gh
    for i in range(7):
        created = http.post(
            repo_path(fake, "/issues"),
            json={"title": f"Deploy failure {i}", "body": "details", "labels": ["deploy"]},
        )
        assert created.status_code == 201
        issue = created.json()
        assert (
            issue["number"] == i + 1 and issue["state"] == "open" and issue["labels"][0]["name"] == "deploy"
        )
        assert issue["user"]["login"] == fake.login and issue["comments"] == 0
        assert issue["html_url"].endswith(f"/{fake.repo}/issues/{i + 1}")
        assert created.headers["location"] == issue["url"]
    assert len(fake.issues) == 7 and fake.issues[0]["title"] == "Deploy failure 0"

    first = http.get(repo_path(fake, "/issues"), params={"per_page": 3})
    assert set(first.links) == {"next", "last"}
    assert "page=3" in first.links["last"]["url"]
    numbers, url, pages = [], repo_path(fake, "/issues") + "?per_page=3", []
    while url:
        page = http.get(url)
        pages.append(page)
        numbers.extend(i["number"] for i in page.json())
        url = page.links.get("next", {}).get("url")
    assert numbers == [7, 6, 5, 4, 3, 2, 1]  # newest first, no duplicates across pages
    assert len(pages) == 3 and set(pages[-1].links) == {"prev", "first"}
    assert set(pages[1].links) == {"prev", "next", "last", "first"}
    assert (
        http.get(repo_path(fake, "/issues"), params={"per_page": 500}).json().__len__() == 7
    )  # capped at 100


def test_issue_filters_update_and_validation(gh):
    fake, http = gh
    fake.add_issue("seeded bug", labels=["bug", "p1"])
    fake.add_issue("seeded chore", labels=["chore"])
    bug = http.get(repo_path(fake, "/issues"), params={"labels": "bug,p1"}).json()
    assert [i["title"] for i in bug] == ["seeded bug"]

    closed = http.patch(repo_path(fake, "/issues/1"), json={"state": "closed", "labels": ["bug"]})
    assert closed.status_code == 200 and closed.json()["state"] == "closed" and closed.json()["closed_at"]
    assert [i["number"] for i in http.get(repo_path(fake, "/issues")).json()] == [2]
    assert [i["number"] for i in http.get(repo_path(fake, "/issues"), params={"state": "closed"}).json()] == [
        1
    ]
    assert len(http.get(repo_path(fake, "/issues"), params={"state": "all"}).json()) == 2
    assert fake.issues[0]["state"] == "closed" and [lb["name"] for lb in fake.issues[0]["labels"]] == ["bug"]

    empty_title = http.post(repo_path(fake, "/issues"), json={"title": ""})
    assert empty_title.status_code == 422
    assert empty_title.json()["message"] == "Validation Failed"
    assert empty_title.json()["errors"] == [{"resource": "Issue", "code": "missing_field", "field": "title"}]
    assert http.post(repo_path(fake, "/issues"), json={"body": "no title"}).status_code == 422
    assert http.patch(repo_path(fake, "/issues/1"), json={"state": "archived"}).status_code == 422
    assert http.get(repo_path(fake, "/issues/99")).json()["message"] == "Not Found"
    assert http.get("/repos/nobody/nothing/issues").status_code == 404
    assert http.get(repo_path(fake, "/issues/2")).json()["title"] == "seeded chore"


def test_issue_comments(gh):
    fake, http = gh
    fake.add_issue("flaky test")
    for text in ("first", "second", "third"):
        response = http.post(repo_path(fake, "/issues/1/comments"), json={"body": text})
        assert response.status_code == 201 and response.json()["body"] == text
        assert response.json()["issue_url"].endswith("/issues/1")
    assert http.get(repo_path(fake, "/issues/1")).json()["comments"] == 3
    page = http.get(repo_path(fake, "/issues/1/comments"), params={"per_page": 2})
    assert [c["body"] for c in page.json()] == ["first", "second"]
    rest = http.get(page.links["next"]["url"]).json()
    assert [c["body"] for c in rest] == ["third"]
    assert [c["body"] for c in fake.comments] == ["first", "second", "third"]
    assert http.post(repo_path(fake, "/issues/1/comments"), json={"body": ""}).status_code == 422
    assert http.post(repo_path(fake, "/issues/9/comments"), json={"body": "x"}).status_code == 404


# --- releases, commits --------------------------------------------------------------------------


def test_releases_by_tag_update_and_duplicates(gh):
    fake, http = gh
    created = http.post(
        repo_path(fake, "/releases"), json={"tag_name": "v1.0.0", "name": "First", "body": "notes"}
    )
    assert created.status_code == 201
    release = created.json()
    assert (release["tag_name"], release["name"], release["draft"], release["prerelease"]) == (
        "v1.0.0",
        "First",
        False,
        False,
    )
    assert http.get(repo_path(fake, "/releases/tags/v1.0.0")).json()["id"] == release["id"]

    missing = http.get(repo_path(fake, "/releases/tags/v9.9.9"))
    assert missing.status_code == 404 and missing.json()["message"] == "Not Found"
    duplicate = http.post(repo_path(fake, "/releases"), json={"tag_name": "v1.0.0"})
    assert duplicate.status_code == 422
    assert duplicate.json()["errors"][0]["code"] == "already_exists"

    draft = http.post(repo_path(fake, "/releases"), json={"tag_name": "v1.1.0", "draft": True}).json()
    assert draft["published_at"] is None
    assert http.get(repo_path(fake, "/releases/tags/v1.1.0")).status_code == 404  # drafts have no tag lookup
    published = http.patch(
        repo_path(fake, f"/releases/{draft['id']}"), json={"draft": False, "body": "final"}
    )
    assert (
        published.status_code == 200
        and published.json()["published_at"]
        and published.json()["body"] == "final"
    )
    assert http.get(repo_path(fake, "/releases/tags/v1.1.0")).json()["body"] == "final"

    listed = http.get(repo_path(fake, "/releases"), params={"per_page": 1})
    assert listed.json()[0]["tag_name"] == "v1.1.0" and "next" in listed.links
    assert [r["tag_name"] for r in fake.releases] == ["v1.0.0", "v1.1.0"]


def test_commits_and_compare_for_release_notes(gh):
    fake, http = gh
    assert http.get(repo_path(fake, "/commits")).status_code == 409  # empty repository, like GitHub
    shas = fake.set_commits(["init", "feat: embeddings", "fix: retry 429", "docs: readme", "feat: budgets"])
    fake.add_tag("v0.1.0", shas[1])

    page = http.get(repo_path(fake, "/commits"), params={"per_page": 2})
    assert [c["commit"]["message"] for c in page.json()] == ["feat: budgets", "docs: readme"]
    assert "page=3" in page.links["last"]["url"]

    compare = http.get(repo_path(fake, "/compare/v0.1.0...main")).json()
    assert compare["status"] == "ahead" and compare["ahead_by"] == 3 and compare["total_commits"] == 3
    assert [c["commit"]["message"] for c in compare["commits"]] == [
        "fix: retry 429",
        "docs: readme",
        "feat: budgets",
    ]
    assert compare["base_commit"]["sha"] == shas[1]
    by_sha = http.get(repo_path(fake, f"/compare/{shas[3][:7]}...{shas[4]}")).json()
    assert by_sha["ahead_by"] == 1
    assert http.get(repo_path(fake, "/compare/v0.1.0...nope")).status_code == 404


# --- GraphQL ------------------------------------------------------------------------------------

CATEGORIES = """
query Categories($owner: String!, $name: String!) {
  repository(owner: $owner, name: $name) {
    id
    discussionCategories(first: 25) { nodes { id name } }
  }
}"""

CREATE = """
mutation CreateDiscussion($input: CreateDiscussionInput!) {
  createDiscussion(input: $input) { discussion { id number url title } }
}"""

LIST = """
query List($owner: String!, $name: String!, $after: String) {
  repository(owner: $owner, name: $name) {
    discussions(first: 2, after: $after) {
      nodes { number title category { name } }
      pageInfo { hasNextPage endCursor }
    }
  }
}"""


def test_graphql_create_and_list_discussions(gh):
    fake, http = gh
    owner, name = fake.repo.split("/")
    categories = http.post(
        "/graphql", json={"query": CATEGORIES, "variables": {"owner": owner, "name": name}}
    )
    assert categories.status_code == 200 and categories.headers["x-ratelimit-resource"] == "graphql"
    repo = categories.json()["data"]["repository"]
    assert set(repo) == {"id", "discussionCategories"}
    general = next(c for c in repo["discussionCategories"]["nodes"] if c["name"] == "General")

    fake.add_issue("issues and discussions share numbers")
    created = []
    for title in ("Weekly insights", "Budget report", "Fleet status"):
        response = http.post(
            "/graphql",
            json={
                "query": CREATE,
                "variables": {
                    "input": {
                        "repositoryId": repo["id"],
                        "categoryId": general["id"],
                        "title": title,
                        "body": "## Summary",
                    }
                },
            },
        )
        payload = response.json()
        assert "errors" not in payload
        created.append(payload["data"]["createDiscussion"]["discussion"])
    assert [d["number"] for d in created] == [2, 3, 4]
    assert created[0]["url"].endswith(f"/{fake.repo}/discussions/2") and created[0]["id"].startswith("D_")
    assert [d["title"] for d in fake.discussions] == ["Weekly insights", "Budget report", "Fleet status"]
    assert (
        fake.discussions[0]["body"] == "## Summary" and fake.discussions[0]["category"]["name"] == "General"
    )

    seen, after = [], None
    while True:
        data = http.post(
            "/graphql", json={"query": LIST, "variables": {"owner": owner, "name": name, "after": after}}
        ).json()["data"]["repository"]["discussions"]
        seen.extend(n["title"] for n in data["nodes"])
        if not data["pageInfo"]["hasNextPage"]:
            break
        after = data["pageInfo"]["endCursor"]
    assert seen == ["Fleet status", "Budget report", "Weekly insights"]


def test_graphql_errors(gh):
    fake, http = gh
    unknown = http.post("/graphql", json={"query": "query { viewer { login } licenses { name } }"}).json()
    assert unknown["data"] is None and "licenses" in unknown["errors"][0]["message"]
    assert unknown["errors"][0]["type"]
    syntax = http.post("/graphql", json={"query": "query { repository(owner: "}).json()
    assert syntax["data"] is None and syntax["errors"][0]["type"] == "PARSE_ERROR"
    bad_repo = http.post(
        "/graphql",
        json={
            "query": CREATE,
            "variables": {
                "input": {"repositoryId": "R_nope", "categoryId": "DIC_nope", "title": "t", "body": "b"}
            },
        },
    ).json()
    assert bad_repo["data"] == {"createDiscussion": None} and bad_repo["errors"][0]["type"] == "NOT_FOUND"
    missing = http.post("/graphql", json={"query": LIST, "variables": {"owner": "x", "name": "y"}}).json()
    assert missing["data"] == {"repository": None} and "Could not resolve" in missing["errors"][0]["message"]
    assert fake.discussions == []


# --- rate limits and faults ---------------------------------------------------------------------


def test_rate_limit_headers_on_every_response(gh):
    fake, http = gh
    responses = [
        http.get(repo_path(fake, "/issues")),
        http.get("/repos/a/b/issues"),
        httpx.get(f"{fake.api_url}/rate_limit"),
        http.post("/graphql", json={"query": "{ viewer { login } }"}),
    ]
    assert [r.status_code for r in responses] == [200, 404, 401, 200]
    for response in responses:
        for header in RATE_HEADERS:
            assert header in response.headers
        assert int(response.headers["x-ratelimit-reset"]) > time.time()
    assert responses[1].headers["x-ratelimit-used"] == "2"
    assert responses[3].headers["x-ratelimit-resource"] == "graphql"


def test_primary_rate_limit_until_reset(gh):
    fake, http = gh
    fake.set_rate_limit(3, reset_in=0.3)
    remaining = [http.get(repo_path(fake, "/issues")).headers["x-ratelimit-remaining"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    blocked = http.get(repo_path(fake, "/issues"))
    assert blocked.status_code == 403
    assert blocked.json()["message"].startswith("API rate limit exceeded")
    assert blocked.headers["x-ratelimit-remaining"] == "0" and blocked.headers["x-ratelimit-used"] == "3"
    assert "retry-after" not in blocked.headers
    status = http.get("/rate_limit").json()  # not counted, still answers
    assert status["resources"]["core"]["remaining"] == 0 and status["rate"]["used"] == 3
    assert (
        http.post("/graphql", json={"query": "{ viewer { login } }"}).status_code == 200
    )  # separate resource
    time.sleep(0.35)
    again = http.get(repo_path(fake, "/issues"))
    assert again.status_code == 200 and again.headers["x-ratelimit-used"] == "1"
    assert fake.count(status=403) == 1 and fake.last()["rate_limited"] is False


def test_secondary_rate_limit(gh):
    fake, http = gh
    fake.secondary_limit_next(1, retry_after=7)
    limited = http.post(repo_path(fake, "/issues"), json={"title": "x"})
    assert limited.status_code == 403 and limited.headers["retry-after"] == "7"
    assert "You have exceeded a secondary rate limit" in limited.json()["message"]
    assert int(limited.headers["x-ratelimit-remaining"]) > 0
    assert fake.issues == []
    assert http.post(repo_path(fake, "/issues"), json={"title": "x"}).status_code == 201
    assert fake.requests[0]["rate_limited"] == "secondary"


def test_server_errors_and_latency(gh):
    fake, http = gh
    fake.fail_next(2, status=502)
    assert [http.get(repo_path(fake, "/issues")).status_code for _ in range(3)] == [502, 502, 200]
    assert [r["fault"] for r in fake.requests] == ["fail", "fail", None]
    fake.fail_next(1, status=503, body={"message": "custom"})
    assert http.post("/graphql", json={"query": "{ viewer { login } }"}).json() == {"message": "custom"}
    fake.latency = 0.1
    started = time.monotonic()
    http.get(repo_path(fake, "/issues"))
    assert time.monotonic() - started >= 0.1
    fake.latency = 0
    fake.hang_next(1, seconds=0.3)
    with pytest.raises(httpx.ReadTimeout):
        http.get(repo_path(fake, "/issues"), timeout=0.1)
    deadline = time.monotonic() + 3
    while fake.last()["status"] is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake.last()["status"] == 499 and fake.last()["fault"] == "hang"
    fake.reset()
    assert fake.requests == [] and fake.rate_limit_state()["used"] == 0
