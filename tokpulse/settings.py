"""Configuration: `agent_config.json` (the spec's format) plus the environment.

Every problem is a `ConfigError` whose message is one line naming the key and what is
wrong; the CLI turns it into exit code 2 before anything starts."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Every environment variable the fleet reads. compose.yaml and the README table are
# checked against this tuple by the tests.
ENV_VARS: tuple[str, ...] = (
    "DATABASE_URL",
    "REDIS_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "GITHUB_TOKEN",
    "GITHUB_API_URL",
    "GITHUB_REPOSITORY",
    "MONTHLY_BUDGET",
    "TOKPULSE_HOME",
    "TOKPULSE_AGENT_CONFIG",
    "TOKPULSE_BIND",
    "TOKPULSE_LOG_LEVEL",
    "FLOWER_BASIC_AUTH",
)

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_agent_config.json")


class ConfigError(Exception):
    """A configuration problem; `str()` is one line: '<key>: <problem>'."""

    def __init__(self, key: str, problem: str):
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Models(_Strict):
    reasoning: str = Field("gpt-4o-mini", min_length=1)
    embeddings: str = Field("text-embedding-3-small", min_length=1)


class Thresholds(_Strict):
    deploy_failures: int = Field(3, ge=1, le=1000)
    latency_spike_percent: Annotated[float, Field(gt=0, le=10_000)] = 20
    error_rate_percent: Annotated[float, Field(gt=0, le=100)] = 5

    @field_validator("latency_spike_percent", "error_rate_percent", mode="before")
    @classmethod
    def _ints_are_numbers(cls, v: Any) -> Any:
        # strict mode refuses 20 for a float field; JSON writes 20 for 20.0.
        if isinstance(v, int) and not isinstance(v, bool):
            return float(v)
        return v


class Features(_Strict):
    self_diagnosis: bool = True
    insights_agent: bool = True
    cost_tracking: bool = True
    privacy_guard: bool = True
    nightly_watchers: bool = True


class CustomPattern(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    regex: str = Field(min_length=1)
    placeholder: str | None = None

    @model_validator(mode="after")
    def _compiles(self) -> CustomPattern:
        try:
            re.compile(self.regex)
        except re.error as exc:
            raise ValueError(f"custom pattern {self.name!r} is not a valid regex: {exc}") from None
        return self


class Privacy(_Strict):
    strict_mode: bool = False
    custom_patterns: list[CustomPattern] = Field(default_factory=list)
    sensitive_keys: list[str] = Field(default_factory=list)
    max_input_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    max_depth: int = Field(100, ge=2, le=10_000)


def _as_float(v: Any) -> Any:
    # strict mode refuses 20 for a float field; JSON writes 20 for 20.0.
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


class AIRateLimit(_Strict):
    """Per-model limits the whole fleet shares (enforced in Redis by the AI gateway)."""

    rpm: int = Field(ge=1, le=100_000_000)
    tpm: int = Field(ge=1, le=100_000_000_000)


class AIPrice(_Strict):
    """USD per 1M tokens."""

    input: Annotated[float, Field(ge=0, le=10_000)]
    output: Annotated[float, Field(ge=0, le=10_000)] = 0.0

    @field_validator("input", "output", mode="before")
    @classmethod
    def _floats(cls, v: Any) -> Any:
        return _as_float(v)


class AIRetry(_Strict):
    max_attempts: int = Field(5, ge=1, le=20)
    backoff_base_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5
    backoff_max_seconds: Annotated[float, Field(gt=0, le=600)] = 20.0
    timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 60.0

    @field_validator("backoff_base_seconds", "backoff_max_seconds", "timeout_seconds", mode="before")
    @classmethod
    def _floats(cls, v: Any) -> Any:
        return _as_float(v)


class AIBatch(_Strict):
    """Embedding request packing; the maxima are OpenAI's own limits."""

    max_inputs: int = Field(2048, ge=1, le=2048)
    max_request_tokens: int = Field(300_000, ge=1, le=300_000)
    max_input_tokens: int = Field(8192, ge=1, le=8192)


# Defaults: OpenAI's published prices and tier-1 limits. A config's `ai.prices` /
# `ai.rate_limits` entries are merged over these (add or override a model; absent = these).
DEFAULT_AI_PRICES: dict[str, dict[str, float]] = {
    "text-embedding-3-small": {"input": 0.02, "output": 0.0},
    "text-embedding-3-large": {"input": 0.13, "output": 0.0},
    "text-embedding-ada-002": {"input": 0.10, "output": 0.0},
    "gpt-4o-mini": {"input": 0.15, "output": 0.60},
    "gpt-4o": {"input": 2.50, "output": 10.00},
    "gpt-4.1": {"input": 2.00, "output": 8.00},
    "gpt-4.1-mini": {"input": 0.40, "output": 1.60},
    "gpt-4.1-nano": {"input": 0.10, "output": 0.40},
    "gpt-4-turbo": {"input": 10.00, "output": 30.00},
    "gpt-4-turbo-preview": {"input": 10.00, "output": 30.00},
    "gpt-3.5-turbo": {"input": 0.50, "output": 1.50},
}
DEFAULT_AI_RATE_LIMITS: dict[str, dict[str, int]] = {
    "text-embedding-3-small": {"rpm": 3000, "tpm": 1_000_000},
    "text-embedding-3-large": {"rpm": 3000, "tpm": 1_000_000},
    "text-embedding-ada-002": {"rpm": 3000, "tpm": 1_000_000},
    "gpt-4o-mini": {"rpm": 500, "tpm": 200_000},
    "gpt-4o": {"rpm": 500, "tpm": 30_000},
    "gpt-4.1": {"rpm": 500, "tpm": 30_000},
    "gpt-4.1-mini": {"rpm": 500, "tpm": 200_000},
    "gpt-4.1-nano": {"rpm": 500, "tpm": 200_000},
    "gpt-4-turbo": {"rpm": 500, "tpm": 30_000},
    "gpt-4-turbo-preview": {"rpm": 500, "tpm": 30_000},
    "gpt-3.5-turbo": {"rpm": 3500, "tpm": 200_000},
}


class AI(_Strict):
    """The AI gateway (`tokpulse.ai`): limits, prices, cache, retries, batching."""

    rate_limits: dict[str, AIRateLimit] = Field(default_factory=lambda: {
        k: AIRateLimit(**v) for k, v in DEFAULT_AI_RATE_LIMITS.items()})
    default_rate_limit: AIRateLimit = AIRateLimit(rpm=500, tpm=30_000)  # models not listed
    prices: dict[str, AIPrice] = Field(default_factory=lambda: {
        k: AIPrice(**v) for k, v in DEFAULT_AI_PRICES.items()})
    limiter_headroom_percent: Annotated[float, Field(ge=0, le=50)] = 2.0  # refill this far below the limit
    limiter_burst_percent: Annotated[float, Field(gt=0, le=100)] = 90.0  # most of a minute's limit at once
    cache_ttl_seconds: int = Field(7 * 24 * 3600, ge=0, le=366 * 24 * 3600)  # chat answers; 0 = off
    max_wait_seconds: Annotated[float, Field(ge=0, le=600)] = 5.0  # longer: the task re-schedules itself
    retry: AIRetry = AIRetry()
    batch: AIBatch = AIBatch()

    @field_validator("limiter_headroom_percent", "limiter_burst_percent", "max_wait_seconds", mode="before")
    @classmethod
    def _floats(cls, v: Any) -> Any:
        return _as_float(v)

    @field_validator("rate_limits", "prices", mode="before")
    @classmethod
    def _merge_defaults(cls, v: Any, info: Any) -> Any:
        if not isinstance(v, dict):
            return v
        defaults = DEFAULT_AI_RATE_LIMITS if info.field_name == "rate_limits" else DEFAULT_AI_PRICES
        for name in v:
            if not isinstance(name, str) or not name.strip():
                raise ValueError("model names must be non-empty strings")
        return {**defaults, **v}


class AgentConfig(_Strict):
    project_ref: str | None = None
    models: Models = Models()
    thresholds: Thresholds = Thresholds()
    features: Features = Features()
    privacy: Privacy = Privacy()
    ai: AI = AI()


def _first_error(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    loc = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in err["loc"]).replace(".[", "[")
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif "input" in err and err["type"] != "missing" and not isinstance(err["input"], dict | list):
        msg = f"{msg} (got {err['input']!r})"
    more = len(exc.errors()) - 1
    if more:
        msg += f" (+{more} more problem{'s' if more > 1 else ''})"
    return loc or "<root>", msg.replace("Value error, ", "")


def load_agent_config(path: Path) -> AgentConfig:
    label = path.name
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "file not found") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(label, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise ConfigError(label, "must be a JSON object")
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        loc, msg = _first_error(exc)
        raise ConfigError(f"{label}: {loc}", msg) from None


def mask_url(url: str | None) -> str | None:
    """The URL with any password replaced by '***' (safe for logs and status output)."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _check_database_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError("DATABASE_URL", f"must start with postgresql:// (got {mask_url(url)!r})")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError:
        raise ConfigError("DATABASE_URL", f"port is not a number (got {mask_url(url)!r})") from None
    if not parts.hostname and "host=" not in parts.query:
        raise ConfigError("DATABASE_URL", f"has no host (got {mask_url(url)!r})")
    if not parts.path.strip("/"):
        raise ConfigError("DATABASE_URL", f"has no database name (got {mask_url(url)!r})")
    return url


def _check_redis_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError("REDIS_URL", f"must start with redis://, rediss:// or unix:// (got {mask_url(url)!r})")
    try:
        parts.port  # noqa: B018
    except ValueError:
        raise ConfigError("REDIS_URL", f"port is not a number (got {mask_url(url)!r})") from None
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError("REDIS_URL", f"has no host (got {mask_url(url)!r})")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ConfigError("REDIS_URL", f"database must be a number (got {db!r})")
    return url


def _check_http_url(key: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, f"must be an http(s):// URL (got {mask_url(url)!r})")
    return url.rstrip("/")


@dataclass(frozen=True)
class Settings:
    home: Path
    agent_config_path: Path
    agent: AgentConfig
    database_url: str | None = None
    redis_url: str | None = None
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    github_token: str | None = field(default=None, repr=False)
    github_api_url: str = "https://api.github.com"
    github_repository: str | None = None
    monthly_budget: float = 500.0
    bind: str = "127.0.0.1"
    log_level: str = "INFO"
    flower_basic_auth: str | None = field(default=None, repr=False)

    @cached_property
    def embedded(self) -> bool:
        """True when the fleet runs its own Postgres and Redis under the home."""
        return self.database_url is None or self.redis_url is None


def _env(environ: dict[str, str], key: str) -> str | None:
    v = environ.get(key)
    if v is None:
        return None
    v = v.strip()
    return v or None


def load_settings(environ: dict[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Read and validate everything; raise `ConfigError` on the first problem."""
    env = dict(os.environ if environ is None else environ)
    cwd = cwd or Path.cwd()

    home = Path(_env(env, "TOKPULSE_HOME") or cwd / ".tokpulse").expanduser()
    if not home.is_absolute():
        home = (cwd / home).resolve()
    if home.exists() and not home.is_dir():
        raise ConfigError("TOKPULSE_HOME", f"is not a directory ({home})")

    cfg_path_s = _env(env, "TOKPULSE_AGENT_CONFIG")
    if cfg_path_s:
        cfg_path = Path(cfg_path_s).expanduser()
        if not cfg_path.is_absolute():
            cfg_path = cwd / cfg_path
    elif (cwd / "agent_config.json").exists():
        cfg_path = cwd / "agent_config.json"
    else:
        cfg_path = DEFAULT_CONFIG_PATH
    agent = load_agent_config(cfg_path)
    if agent.privacy.custom_patterns:
        # The guard's own checks (no empty matches, placeholder shape) at start-up, so a bad
        # pattern stops the fleet with exit 2 instead of failing its first redaction.
        from tokpulse.privacy import validate_custom_patterns

        validate_custom_patterns(agent.privacy)

    db = _env(env, "DATABASE_URL")
    if db is not None:
        _check_database_url(db)
    redis_url = _env(env, "REDIS_URL")
    if redis_url is not None:
        _check_redis_url(redis_url)
    if (db is None) != (redis_url is None):
        missing = "REDIS_URL" if redis_url is None else "DATABASE_URL"
        other = "DATABASE_URL" if redis_url is None else "REDIS_URL"
        raise ConfigError(missing, f"must be set when {other} is (set both, or neither for the embedded default)")

    base_url = _env(env, "OPENAI_BASE_URL")
    if base_url is not None:
        base_url = _check_http_url("OPENAI_BASE_URL", base_url)
    gh_url = _check_http_url("GITHUB_API_URL", _env(env, "GITHUB_API_URL") or "https://api.github.com")
    repo = _env(env, "GITHUB_REPOSITORY")
    if repo is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repo):
        raise ConfigError("GITHUB_REPOSITORY", f"must look like owner/name (got {repo!r})")

    budget_s = _env(env, "MONTHLY_BUDGET")
    budget = 500.0
    if budget_s is not None:
        try:
            budget = float(budget_s)
        except ValueError:
            raise ConfigError("MONTHLY_BUDGET", f"must be a number of dollars (got {budget_s!r})") from None
        if not (budget > 0) or budget != budget or budget == float("inf"):
            raise ConfigError("MONTHLY_BUDGET", f"must be a positive number of dollars (got {budget_s!r})")

    fba = _env(env, "FLOWER_BASIC_AUTH")
    if fba is not None:
        for pair in fba.split(","):
            user, sep, pw = pair.partition(":")
            if not sep or not user or not pw:
                raise ConfigError("FLOWER_BASIC_AUTH", "must be user:password[,user:password...]")

    bind = _env(env, "TOKPULSE_BIND") or "127.0.0.1"
    level = (_env(env, "TOKPULSE_LOG_LEVEL") or "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError("TOKPULSE_LOG_LEVEL", f"must be DEBUG, INFO, WARNING, ERROR or CRITICAL (got {level!r})")

    return Settings(
        home=home,
        agent_config_path=cfg_path,
        agent=agent,
        database_url=db,
        redis_url=redis_url,
        openai_api_key=_env(env, "OPENAI_API_KEY"),
        openai_base_url=base_url,
        github_token=_env(env, "GITHUB_TOKEN"),
        github_api_url=gh_url,
        github_repository=repo,
        monthly_budget=budget,
        bind=bind,
        log_level=level,
        flower_basic_auth=fba,
    )
