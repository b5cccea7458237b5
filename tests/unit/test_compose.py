"""Structure of the deployment files: compose.yaml, docker/Dockerfile, .dockerignore.

No Docker engine runs on the development machines or in CI, so nothing here builds or
starts a container. Instead the files are checked against the code they deploy: one
service per pool in `workers.pools.POOLS`, commands that `tokpulse.cli.build_parser()`
accepts, and environment variables that `tokpulse.settings.ENV_VARS` lists."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tokpulse.cli import build_parser
from tokpulse.settings import ENV_VARS, load_agent_config
from workers.pools import POOLS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
HEALTHCHECK_SH = ROOT / "docker" / "healthcheck.sh"

# Variables compose.yaml interpolates although the fleet itself does not read them.
COMPOSE_ONLY_VARS = {
    "POSTGRES_PASSWORD": "the postgres image's own setting; DATABASE_URL is built from it",
    "INSTALL_EXTRAS": "a build argument of docker/Dockerfile: which extras go into the image",
}
# Environment variables that carry secrets (or URLs that may embed one): never baked into
# the image, never given a default in compose.yaml.
SECRET_VARS = {
    "OPENAI_API_KEY",
    "GITHUB_TOKEN",
    "FLOWER_BASIC_AUTH",
    "DATABASE_URL",
    "REDIS_URL",
    "POSTGRES_PASSWORD",
}
STORES = ("redis", "postgres")


# ---------------------------------------------------------------- helpers


@cache
def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), "compose.yaml has no services"
    return data


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _fleet_image() -> str:
    image = _compose()["x-fleet"]["image"]
    assert image, "x-fleet has no image"
    return image


def _fleet_services() -> dict[str, dict[str, Any]]:
    """Services that run the fleet image (and so a `tokpulse` command)."""
    return {name: svc for name, svc in _services().items() if svc.get("image") == _fleet_image()}


def _command(svc: dict[str, Any]) -> list[str]:
    cmd = svc.get("command")
    if cmd is None:
        return []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def _parse(argv: list[str]):
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on an unknown command or option
        raise AssertionError(f"`tokpulse {' '.join(argv)}` is not accepted by the CLI parser") from exc


def _parsed(name: str):
    return _parse(_command(_fleet_services()[name]))


def _services_running(command: str) -> list[str]:
    return [name for name in _fleet_services() if _parsed(name).command == command]


def _env(svc: dict[str, Any]) -> dict[str, str | None]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        return dict((item.split("=", 1) + [None])[:2] for item in env)
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def _depends(svc: dict[str, Any]) -> dict[str, str]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):  # short syntax: plain service_started
        return dict.fromkeys(deps, "service_started")
    return {k: (v or {}).get("condition", "service_started") for k, v in deps.items()}


def _healthcheck_test(svc: dict[str, Any]) -> str:
    hc = svc.get("healthcheck") or {}
    test = hc.get("test")
    if hc.get("disable") or not test:
        return ""
    if isinstance(test, str):
        return test
    if test[0] == "NONE":
        return ""
    return " ".join(test[1:])


def _published(svc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host_ip, published, target) for each published port."""
    out = []
    for port in svc.get("ports") or []:
        if isinstance(port, dict):
            out.append((str(port.get("host_ip", "")), str(port.get("published", "")), str(port["target"])))
            continue
        m = re.fullmatch(r"(?:(\[[^\]]+\]|[\d.]+):)?(?:([\d-]*):)?([\d-]+)(?:/\w+)?", str(port))
        assert m, f"unparsed port {port!r}"
        out.append((m.group(1) or "", m.group(2) or "", m.group(3)))
    return out


def _seconds(duration: str | int) -> float:
    if isinstance(duration, int):
        return float(duration)
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", duration)
    assert parts and "".join(a + b for a, b in parts) == duration, f"bad duration {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def _strings(node: Any):
    """Every string in a loaded YAML document, keys included."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)
    elif isinstance(node, str):
        yield node


def _interpolated(text: str) -> set[str]:
    text = text.replace("$$", "")  # `$$` is a literal `$` for the container's shell
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text)) | set(
        re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", text)
    )


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and heredoc bodies skipped."""
    lines = DOCKERFILE.read_text(encoding="utf-8").splitlines()
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            nxt = lines[i].strip()
            i += 1
            line = line[:-1] + ("" if nxt.startswith("#") else " " + nxt)
        op, _, rest = line.partition(" ")
        heredoc = re.search(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1", rest)
        if heredoc and op.upper() in ("RUN", "COPY"):
            while i < len(lines) and lines[i].strip() != heredoc.group(2):
                i += 1
            i += 1
        out.append((op.upper(), rest.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def _exec_form(args: str) -> list[str]:
    assert args.startswith("["), f"use the exec (JSON) form, not the shell form: {args!r}"
    return json.loads(args)


def _env_keys(args: str) -> list[str]:
    tokens = shlex.split(args)
    if tokens and "=" not in tokens[0]:  # legacy `ENV KEY value`
        return [tokens[0]]
    return [t.split("=", 1)[0] for t in tokens]


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _in_build_context(path: str) -> bool:
    """Whether .dockerignore leaves `path` (relative to the repo root) in the context.
    Like Docker: a rule matches a path or any of its parents; the last match wins."""
    rules = [ln.strip() for ln in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()]
    rules = [r for r in rules if r and not r.startswith("#")]
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for rule in rules:
        negate = rule.startswith("!")
        rx = _glob_regex(rule.lstrip("!").strip("/"))
        if any(rx.fullmatch(c) for c in candidates):
            included = negate
    return included


# ---------------------------------------------------------------- pools


@pytest.mark.parametrize("pool", sorted(POOLS))
def test_every_pool_has_exactly_one_scalable_service(pool):
    running = [n for n in _services_running("worker") if _parsed(n).pool == pool]
    assert len(running) == 1, f"pool {pool!r} is run by {running or 'no service'}; want exactly one"
    svc = _services()[running[0]]
    assert "container_name" not in svc, f"{running[0]}: container_name breaks --scale"
    assert not svc.get("ports"), f"{running[0]}: a worker publishes nothing (and ports break --scale)"
    assert "hostname" not in svc, f"{running[0]}: a fixed hostname gives every replica the same node name"


@pytest.mark.parametrize("pool", sorted(POOLS))
def test_pool_services_start_after_migrate_and_healthy_stores(pool):
    name = next(n for n in _services_running("worker") if _parsed(n).pool == pool)
    deps = _depends(_services()[name])
    assert deps.get("migrate") == "service_completed_successfully", f"{name}: {deps}"
    for store in STORES:
        assert deps.get(store) == "service_healthy", f"{name} must wait for a healthy {store}: {deps}"


@pytest.mark.parametrize("pool", sorted(POOLS))
def test_pool_healthcheck_pings_its_own_node(pool):
    name = next(n for n in _services_running("worker") if _parsed(n).pool == pool)
    test = _healthcheck_test(_services()[name])
    assert "celery -A workers.app inspect ping" in test, f"{name}: {test!r}"
    # `$$` so that the container's shell, not compose on the host, expands HOSTNAME.
    assert f"-d {pool}@$$HOSTNAME" in test, f"{name} must ping {pool}@$$HOSTNAME: {test!r}"


@pytest.mark.parametrize("pool", sorted(POOLS))
def test_pool_stop_grace_period_covers_the_hard_time_limit(pool):
    name = next(n for n in _services_running("worker") if _parsed(n).pool == pool)
    grace = _services()[name].get("stop_grace_period")
    assert grace is not None, f"{name}: Docker's default 10 s would kill running tasks on stop"
    assert _seconds(grace) >= POOLS[pool].time_limit, (
        f"{name}: stop_grace_period {grace} < time_limit {POOLS[pool].time_limit}s"
    )


def test_no_worker_service_without_a_pool():
    for name in _services_running("worker"):
        assert _parsed(name).pool in POOLS, name


# ---------------------------------------------------------------- beat, migrate, commands


def test_exactly_one_beat():
    beats = _services_running("beat")
    assert len(beats) == 1, f"beat services: {beats}"
    svc = _services()[beats[0]]
    assert (svc.get("deploy") or {}).get("replicas") == 1, "beat: deploy.replicas must be 1"
    assert _depends(svc).get("migrate") == "service_completed_successfully"


def test_migrate_is_a_one_shot_that_waits_for_postgres():
    migrates = _services_running("migrate")
    assert len(migrates) == 1, f"migrate services: {migrates}"
    svc = _services()[migrates[0]]
    assert str(svc.get("restart", "no")) == "no", "a one-shot must not restart"
    assert _depends(svc).get("postgres") == "service_healthy"


def test_every_fleet_command_exists_in_the_cli():
    fleet = _fleet_services()
    # migrate, beat, flower, api and one per pool
    assert len(fleet) >= len(POOLS) + 4, sorted(fleet)
    for name, svc in fleet.items():
        assert "entrypoint" not in svc, f"{name}: the image's entrypoint is `tokpulse`"
        assert _command(svc), f"{name}: no command"
        _parse(_command(svc))


def test_only_fleet_and_store_services():
    others = set(_services()) - set(_fleet_services()) - set(STORES)
    assert not others, f"services that run neither the fleet image nor a store: {sorted(others)}"


# ---------------------------------------------------------------- environment


def _fleet_env_names() -> set[str]:
    names = set(_env({"environment": _compose()["x-fleet-env"]}))
    for svc in _fleet_services().values():
        names |= set(_env(svc))
    return names


def test_fleet_environment_names_are_read_by_the_fleet():
    unknown = _fleet_env_names() - set(ENV_VARS)
    assert not unknown, f"fleet services get variables the fleet never reads: {sorted(unknown)}"


def test_every_variable_the_fleet_reads_reaches_it():
    missing = set(ENV_VARS) - _fleet_env_names()
    assert not missing, f"compose.yaml does not pass {sorted(missing)} to any fleet service"


def test_interpolated_variables_are_known():
    names: set[str] = set()
    for s in _strings(_compose()):
        names |= _interpolated(s)
    unknown = names - set(ENV_VARS) - set(COMPOSE_ONLY_VARS)
    assert not unknown, (
        f"compose.yaml interpolates unknown variables (a `$` for the container needs `$$`): {sorted(unknown)}"
    )


def test_secrets_come_from_the_environment_without_defaults():
    envs = [_env({"environment": _compose()["x-fleet-env"]})] + [_env(s) for s in _fleet_services().values()]
    for env in envs:
        for name, value in env.items():
            if name not in SECRET_VARS or not value:
                continue
            defaults = re.findall(r"\$\{\w+:?-([^}]+)\}", value)
            assert not defaults, f"{name}: a secret with a default value {defaults}"
            if name.endswith("_URL"):
                password = re.search(r"://[^/:@]*:([^@]*)@", value)
                assert not password or password.group(1).startswith("${"), f"{name}: literal password"
            else:
                assert re.fullmatch(rf"\$\{{{name}(:-|:\?[^}}]*)\}}", value), f"{name}: {value!r}"
    fleet = envs[0]
    # The fleet starts without an OpenAI key (local model), so the key is optional.
    assert fleet["OPENAI_API_KEY"] == "${OPENAI_API_KEY:-}"
    assert "${POSTGRES_PASSWORD:?" in fleet["DATABASE_URL"], "DATABASE_URL must require POSTGRES_PASSWORD"
    assert fleet["DATABASE_URL"].startswith("postgresql://") and "@postgres:" in fleet["DATABASE_URL"]
    assert fleet["REDIS_URL"].startswith("redis://redis:")
    assert "FLOWER_BASIC_AUTH" not in fleet, "only Flower gets its credentials"


# ---------------------------------------------------------------- stores


def test_redis_keeps_everything():
    redis = _services()["redis"]
    cmd = _command(redis)
    assert cmd[:1] == ["redis-server"], cmd
    assert "--appendonly" in cmd and cmd[cmd.index("--appendonly") + 1] == "yes", cmd
    assert "--maxmemory-policy" in cmd and cmd[cmd.index("--maxmemory-policy") + 1] == "noeviction", cmd
    assert "redis-cli ping" in _healthcheck_test(redis)
    assert any(str(v).split(":")[1] == "/data" for v in redis.get("volumes") or []), "redis: no /data volume"


def test_postgres_is_pgvector_with_a_tcp_readiness_check():
    pg = _services()["postgres"]
    assert str(pg["image"]).startswith("pgvector/pgvector:"), pg["image"]
    test = _healthcheck_test(pg)
    assert "pg_isready" in test and "-h 127.0.0.1" in test, test
    mounts = [str(v).split(":")[1] for v in pg.get("volumes") or []]
    major = re.search(r"pg(\d+)", pg["image"])
    want = "/var/lib/postgresql" if major and int(major.group(1)) >= 18 else "/var/lib/postgresql/data"
    assert want in mounts, f"postgres data volume must be mounted at {want} for {pg['image']}: {mounts}"


@pytest.mark.parametrize("store", STORES)
def test_stores_are_not_published(store):
    svc = _services()[store]
    assert not svc.get("ports"), f"{store} must not publish host ports"
    networks = svc.get("networks") or ["default"]
    declared = _compose().get("networks") or {}
    for net in networks:
        assert (declared.get(net) or {}).get("internal") is True, f"{store} is on non-internal network {net}"


def test_named_volumes_are_declared():
    declared = set(_compose().get("volumes") or {})
    for name, svc in _services().items():
        for vol in svc.get("volumes") or []:
            source = str(vol).split(":")[0] if not isinstance(vol, dict) else vol.get("source", "")
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name}: volume {source} is not declared"


# ---------------------------------------------------------------- health and Flower


def test_every_service_but_migrate_has_a_healthcheck():
    migrate = set(_services_running("migrate"))
    for name, svc in _services().items():
        if name in migrate:
            continue
        assert _healthcheck_test(svc), f"{name} has no healthcheck"


def test_healthcheck_script_knows_every_role_compose_uses():
    roles = set(re.findall(r"^\s*([a-z]+)\)\s*$", HEALTHCHECK_SH.read_text(encoding="utf-8"), re.M))
    for name, svc in _services().items():
        test = _healthcheck_test(svc)
        if "tokpulse-healthcheck" in test:
            role = test.split("tokpulse-healthcheck", 1)[1].split()[0]
            assert role in roles, f"{name}: tokpulse-healthcheck has no role {role!r} ({sorted(roles)})"


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh")
def test_healthcheck_script_is_valid_sh():
    subprocess.run(["sh", "-n", str(HEALTHCHECK_SH)], check=True)


def test_flower_is_loopback_only_and_authenticated():
    flowers = _services_running("flower")
    assert len(flowers) == 1, flowers
    svc = _services()[flowers[0]]
    ports = _published(svc)
    assert ports, "flower publishes no port"
    port = _parsed(flowers[0]).port
    for host_ip, _published_port, target in ports:
        assert host_ip == "127.0.0.1", f"flower must bind the host's loopback only, not {host_ip or 'all'}"
        assert target == str(port), f"published target {target} != flower --port {port}"
    env = _env(svc)
    assert env.get("FLOWER_BASIC_AUTH", "").startswith("${FLOWER_BASIC_AUTH:?"), "basic auth must be required"
    assert env.get("TOKPULSE_BIND") == "0.0.0.0", "inside the container Flower must listen on all interfaces"
    test = _healthcheck_test(svc)
    assert "/healthcheck" in test or f"tokpulse-healthcheck flower {port}" in test, test


def test_only_flower_and_the_api_publish_ports_and_only_on_loopback():
    flowers, apis = _services_running("flower"), _services_running("api")
    assert len(flowers) == 1 and len(apis) == 1, f"flower services: {flowers}; api services: {apis}"
    expected = {flowers[0], apis[0]}
    publishing = {n for n, svc in _services().items() if svc.get("ports")}
    assert publishing == expected, f"services publishing ports: {sorted(publishing)}; want {sorted(expected)}"
    for name in publishing:
        for host_ip, _published_port, target in _published(_services()[name]):
            assert host_ip == "127.0.0.1", (
                f"{name}: port {target} must bind the host's loopback only, not {host_ip or 'all interfaces'}"
            )


def test_api_service_runs_the_cli_command_on_its_published_port():
    apis = _services_running("api")
    assert len(apis) == 1, f"api services: {apis}"
    name = apis[0]
    svc = _services()[name]
    port = _parsed(name).port
    # Without --port the API takes a free port recorded in ports.json: nothing to publish.
    assert port is not None, f"{name}: `tokpulse api` needs --port to match the published port"
    ports = _published(svc)
    assert ports and all(target == str(port) for _, _, target in ports), (
        f"{name}: published targets {[t for _, _, t in ports]} != `tokpulse api --port {port}`"
    )
    # `tokpulse api` listens on TOKPULSE_BIND; in the container that must be every interface.
    assert _env(svc).get("TOKPULSE_BIND") == "0.0.0.0", f"{name}: TOKPULSE_BIND must be 0.0.0.0 in the container"
    assert "FLOWER_BASIC_AUTH" not in _env(svc), "only Flower gets its credentials"
    deps = _depends(svc)
    assert deps.get("migrate") == "service_completed_successfully", f"{name}: {deps}"
    for store in STORES:  # tokens and vectors in Postgres; the gateway's limits and cache in Redis
        assert deps.get(store) == "service_healthy", f"{name} must wait for a healthy {store}: {deps}"
    assert (svc.get("deploy") or {}).get("replicas", 1) == 1, f"{name}: a published port allows one replica"


def test_api_healthcheck_asks_healthz():
    apis = _services_running("api")
    assert apis, "no service runs `tokpulse api`"
    name = apis[0]
    port = _parsed(name).port
    test = _healthcheck_test(_services()[name])
    assert "/healthz" in test or f"tokpulse-healthcheck api {port}" in test, test
    if "tokpulse-healthcheck api" in test:
        script = HEALTHCHECK_SH.read_text(encoding="utf-8")
        role = re.search(r"^\s*api\)\s*$(.*?)^\s*;;", script, re.M | re.S)
        assert role and "/healthz" in role.group(1), "tokpulse-healthcheck api must request /healthz"


def test_agent_config_mounted_into_the_fleet_exists_and_is_valid():
    source = _compose()["configs"]["agent_config"]["file"]
    default = re.fullmatch(r"\$\{TOKPULSE_AGENT_CONFIG:-([^}]+)\}", source)
    path = ROOT / (default.group(1) if default else source)
    assert path.is_file(), f"compose.yaml mounts {path}, which does not exist"
    load_agent_config(path)
    target = _compose()["x-fleet-env"]["TOKPULSE_AGENT_CONFIG"]
    for name, svc in _fleet_services().items():
        targets = [c.get("target") for c in svc.get("configs") or [] if c.get("source") == "agent_config"]
        assert targets == [target], f"{name}: agent config not mounted at TOKPULSE_AGENT_CONFIG ({target})"


# ---------------------------------------------------------------- Dockerfile


def test_compose_builds_the_dockerfile_with_its_args():
    build = _compose()["x-fleet"]["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    args = {rest.split("=", 1)[0] for op, rest in _dockerfile() if op == "ARG"}
    unknown = set(build.get("args") or {}) - args
    assert not unknown, f"build args the Dockerfile does not declare: {sorted(unknown)}"


def test_dockerfile_is_multi_stage_on_python_311_slim():
    froms = [shlex.split(rest) for op, rest in _dockerfile() if op == "FROM"]
    assert len(froms) >= 2, "want a builder stage and a runtime stage"
    for f in froms:
        assert f[0] == "python:3.11-slim", f


def test_dockerfile_runs_tokpulse_as_a_non_root_user():
    final = _final_stage()
    users = [rest for op, rest in final if op == "USER"]
    assert users, "the runtime stage sets no USER (it would run as root)"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
    entrypoints = [_exec_form(rest) for op, rest in final if op == "ENTRYPOINT"]
    assert entrypoints and entrypoints[-1] == ["tokpulse"], entrypoints
    cmds = [_exec_form(rest) for op, rest in final if op == "CMD"]
    if cmds and cmds[-1] != ["--help"]:
        _parse(cmds[-1])
    env = {k for op, rest in final if op == "ENV" for k in _env_keys(rest)}
    assert "PYTHONUNBUFFERED" in env


def test_dockerfile_copies_only_what_exists_in_the_context():
    copies = 0
    for op, rest in _dockerfile():
        if op not in ("COPY", "ADD"):
            continue
        tokens = _exec_form(rest) if rest.startswith("[") else shlex.split(rest)
        flags = [t for t in tokens if t.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue
        for src in [t for t in tokens if not t.startswith("--")][:-1]:
            copies += 1
            assert (ROOT / src).exists(), f"{op} {src}: no such path in the repository"
            if src != ".":
                assert _in_build_context(src), f"{op} {src}: left out of the build context by .dockerignore"
    assert copies, "the Dockerfile copies nothing from the context"


def test_dockerfile_bakes_no_secrets():
    for op, rest in _dockerfile():
        if op in ("ENV", "ARG"):
            names = _env_keys(rest) if op == "ENV" else [rest.split("=", 1)[0]]
            baked = set(names) & SECRET_VARS
            assert not baked, f"{op} {rest}: secrets come from the environment at run time"
            unknown = {n for n in names if n.startswith("TOKPULSE_") and n not in ENV_VARS}
            assert not unknown, f"{op} {rest}: the fleet reads no {sorted(unknown)}"


# ---------------------------------------------------------------- .dockerignore


def _needed_for_pip_install() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = pyproject["tool"]["setuptools"]
    needed = ["pyproject.toml"] + [f"{m}.py" for m in setuptools.get("py-modules", [])]
    readme = pyproject["project"].get("readme")
    if isinstance(readme, str):
        needed.append(readme)
    for pattern in setuptools["packages"]["find"]["include"]:
        top = pattern.split(".")[0].rstrip("*")
        needed += sorted(p.name for p in ROOT.glob(top + "*") if (p / "__init__.py").is_file()) or [top]
    return needed


def test_dockerignore_keeps_what_pip_install_needs():
    for path in _needed_for_pip_install():
        assert _in_build_context(path), f".dockerignore leaves out {path}, which `pip install .` needs"


@pytest.mark.parametrize(
    "path", [".env", ".git", ".venv", ".tokpulse", "agent_config.json", "tests", "workers/__pycache__"]
)
def test_dockerignore_leaves_out_local_state_and_secrets(path):
    assert not _in_build_context(path), f".dockerignore lets {path} into the image"


def test_postgres_shared_memory_holds_a_parallel_index_build():
    """A parallel HNSW build puts maintenance_work_mem in /dev/shm; a smaller shm_size
    fails every namespace's index build ("could not resize shared memory segment")."""
    from tokpulse.embeddings.store import INDEX_BUILD_MEMORY

    def mb(v: str) -> float:
        v = str(v).strip().lower()
        units = {"g": 1024, "gb": 1024, "m": 1, "mb": 1}
        for u in sorted(units, key=len, reverse=True):
            if v.endswith(u):
                return float(v[: -len(u)]) * units[u]
        return float(v) / 2**20

    pg = _compose()["services"]["postgres"]
    assert mb(pg["shm_size"]) >= 2 * mb(INDEX_BUILD_MEMORY)
