"""Configuration: bad values stop start-up with exit 2 and one line naming the key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tokpulse.settings import ConfigError, load_settings, mask_url

ROOT = Path(__file__).resolve().parents[2]


def _cfg(tmp_path: Path, data) -> dict[str, str]:
    p = tmp_path / "agent_config.json"
    p.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return {"TOKPULSE_AGENT_CONFIG": str(p), "TOKPULSE_HOME": str(tmp_path / "home")}


def test_defaults_load_the_spec_format():
    s = load_settings({}, cwd=ROOT)
    assert s.agent.thresholds.deploy_failures == 3
    assert s.agent.thresholds.latency_spike_percent == 20
    assert s.agent.features.privacy_guard is True
    assert s.embedded and s.monthly_budget == 500.0
    assert s.home == ROOT / ".tokpulse"


def test_spec_example_config_is_accepted(tmp_path):
    spec = {
        "project_ref": "ghqyxhbyyirveptgwoqm",
        "models": {"reasoning": "gpt-4-turbo-preview", "embeddings": "text-embedding-3-small"},
        "thresholds": {"deploy_failures": 3, "latency_spike_percent": 20, "error_rate_percent": 5},
        "features": {"self_diagnosis": True, "insights_agent": True, "cost_tracking": True, "privacy_guard": True},
    }
    s = load_settings(_cfg(tmp_path, spec))
    assert s.agent.models.reasoning == "gpt-4-turbo-preview"
    assert s.agent.features.nightly_watchers is True  # absent flag keeps its default


@pytest.mark.parametrize(
    ("data", "key", "problem"),
    [
        ({"thresholds": {"deploy_failures": "three"}}, "thresholds.deploy_failures", "valid integer"),
        ({"features": {"self_diagnosis": "yes"}}, "features.self_diagnosis", "valid boolean"),
        ({"features": {"auto_merge": True}}, "features.auto_merge", "unknown key"),
        ({"colour": "blue"}, "colour", "unknown key"),
        ({"thresholds": {"error_rate_percent": 150}}, "thresholds.error_rate_percent", "less than or equal to 100"),
        ({"thresholds": {"latency_spike_percent": -5}}, "thresholds.latency_spike_percent", "greater than 0"),
        ({"thresholds": {"deploy_failures": 0}}, "thresholds.deploy_failures", "greater than or equal to 1"),
        ({"privacy": {"custom_patterns": [{"name": "order", "regex": "ORD-(\\d+"}]}},
         "privacy.custom_patterns[0]", "'order' is not a valid regex"),
        ("{not json", "agent_config.json", "not valid JSON"),
        ("[1, 2]", "agent_config.json", "must be a JSON object"),
    ],
)
def test_invalid_agent_config_names_key_and_problem(tmp_path, data, key, problem):
    with pytest.raises(ConfigError) as err:
        load_settings(_cfg(tmp_path, data))
    msg = str(err.value)
    assert key in msg and problem in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("env", "key", "problem"),
    [
        ({"DATABASE_URL": "mysql://u@h/db", "REDIS_URL": "redis://h"}, "DATABASE_URL", "postgresql://"),
        ({"DATABASE_URL": "postgresql://u:pw@h:port/db", "REDIS_URL": "redis://h"}, "DATABASE_URL", "port"),
        ({"DATABASE_URL": "postgresql://u@h", "REDIS_URL": "redis://h"}, "DATABASE_URL", "no database name"),
        ({"DATABASE_URL": "postgresql://u@h/db", "REDIS_URL": "http://h"}, "REDIS_URL", "redis://"),
        ({"DATABASE_URL": "postgresql://u@h/db"}, "REDIS_URL", "must be set"),
        ({"MONTHLY_BUDGET": "lots"}, "MONTHLY_BUDGET", "number"),
        ({"MONTHLY_BUDGET": "-3"}, "MONTHLY_BUDGET", "positive"),
        ({"GITHUB_REPOSITORY": "just-a-name"}, "GITHUB_REPOSITORY", "owner/name"),
        ({"OPENAI_BASE_URL": "localhost:8080"}, "OPENAI_BASE_URL", "http"),
        ({"FLOWER_BASIC_AUTH": "adminonly"}, "FLOWER_BASIC_AUTH", "user:password"),
    ],
)
def test_invalid_environment_names_key(tmp_path, env, key, problem):
    with pytest.raises(ConfigError) as err:
        load_settings({"TOKPULSE_HOME": str(tmp_path), **env}, cwd=ROOT)
    assert str(err.value).startswith(key + ":")
    assert problem in str(err.value)


def test_password_never_echoed_in_errors():
    with pytest.raises(ConfigError) as err:
        load_settings({"DATABASE_URL": "postgresql://bob:hunter2@db:xx/app", "REDIS_URL": "redis://h"}, cwd=ROOT)
    assert "hunter2" not in str(err.value)
    assert mask_url("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert mask_url("postgresql://u@h/db") == "postgresql://u@h/db"


def _run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return subprocess.run([sys.executable, "-m", "tokpulse.cli", *args], env={**base, **env},
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.mark.parametrize("command", [["up"], ["worker", "--pool", "ai"], ["migrate"], ["status", "--json"]])
def test_bad_config_exits_2_before_anything_runs(tmp_path, command):
    env = _cfg(tmp_path, {"thresholds": {"error_rate_percent": 500}})
    r = _run_cli(command, env)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "thresholds.error_rate_percent" in lines[0]
    assert not (tmp_path / "home").exists(), "nothing may start (no home created)"


def test_malformed_database_url_exits_2(tmp_path):
    r = _run_cli(["up"], {"DATABASE_URL": "postgresql://u:pw@:5432", "REDIS_URL": "redis://127.0.0.1:1/0",
                          "TOKPULSE_HOME": str(tmp_path / "home")})
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert "DATABASE_URL" in r.stderr and "pw" not in r.stderr


def test_custom_pattern_matching_empty_text_is_a_startup_error(tmp_path):
    env = _cfg(tmp_path, {"privacy": {"custom_patterns": [{"name": "ticket", "regex": "(T-\\d+)?"}]}})
    r = _run_cli(["status"], env)
    assert r.returncode == 2
    assert "privacy.custom_patterns[0]" in r.stderr and "'ticket'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
