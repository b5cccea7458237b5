"""pytest fixtures for the loopback OpenAI and GitHub fakes (register with
`pytest_plugins = ["tests.fakes.fixtures"]` in the root conftest.py).

  fake_openai      a started FakeOpenAI on 127.0.0.1:<free port>, stopped after the test
  fake_github      a started FakeGitHub on 127.0.0.1:<free port>, stopped after the test
  fake_openai_env  fake_openai plus OPENAI_API_KEY / OPENAI_BASE_URL set for the test
  fake_github_env  fake_github plus GITHUB_TOKEN / GITHUB_API_URL / GITHUB_REPOSITORY set for the test
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .github_server import FakeGitHub
from .openai_server import FakeOpenAI


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture
def fake_openai_env(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    monkeypatch.setenv("OPENAI_API_KEY", fake_openai.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    return fake_openai


@pytest.fixture
def fake_github_env(fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> FakeGitHub:
    monkeypatch.setenv("GITHUB_TOKEN", fake_github.token)
    monkeypatch.setenv("GITHUB_API_URL", fake_github.api_url)
    monkeypatch.setenv("GITHUB_REPOSITORY", fake_github.repo)
    return fake_github
