"""deploy/prometheus: the scrape config and the alerting rules, checked and unit-tested by the
real promtool (Debian's `prometheus` package, installed when missing)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from backend.core.config import Settings
from tests.deploy.prometheus_tools import (
    PROMETHEUS_DIR,
    ROOT,
    metric_names,
    run_promtool,
    unknown_metrics,
)

CONFIG: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
RULES: list[dict[str, Any]] = [
    rule
    for group in yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    for rule in group["rules"]
]
ALERTS = {rule["alert"]: rule for rule in RULES}
UNIT_TESTS: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def promtool_ok(*args: str, cwd: Path = PROMETHEUS_DIR) -> str:
    done = run_promtool(*args, cwd=cwd)
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_alerts_the_operator_is_promised() -> None:
    assert set(ALERTS) == {
        "RedisMemoryHigh",
        "StateWritesNotReplicated",
        "DirtyBacklogLagging",
        "NoWorkerAnswering",
        "BrokerWithoutReplica",
        "SnapshotsRefused",
        "Http5xxRateHigh",
        "ReplyFailureRateHigh",
        "LlmTriageFallingBack",
        "SseStreamsCutForOverflow",
        "StreamNotificationsMissing",
        "EventLoopStalled",
        "ReplicaDown",
    }
    assert all("alert" in rule for rule in RULES), "only alerting rules here"


def test_every_alert_has_a_severity_and_a_runbook_line() -> None:
    for name, rule in ALERTS.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        notes = rule["annotations"]
        for key in ("summary", "description", "runbook"):
            assert str(notes.get(key, "")).strip(), f"{name} has no {key}"
        assert "\n" not in notes["runbook"].strip(), f"{name}: the runbook is one line"


def test_the_rules_read_only_contract_metrics() -> None:
    for name, rule in ALERTS.items():
        assert metric_names(rule["expr"]), f"{name} reads no metric"
        assert not unknown_metrics(rule["expr"]), f"{name} reads {unknown_metrics(rule['expr'])}"


def test_the_dirty_backlog_threshold_is_five_flush_intervals() -> None:
    flush = Settings.model_fields["dirty_flush_interval"].default
    assert ALERTS["DirtyBacklogLagging"]["expr"].endswith(f"> {5 * flush:g}")


def test_promtool_checks_the_rules() -> None:
    assert "SUCCESS: 13 rules found" in promtool_ok("check", "rules", "alerts.yml")


def test_promtool_checks_the_config_as_the_container_sees_it(tmp_path: Path) -> None:
    # The prometheus service mounts both files in one directory and writes the token file
    # next to them at start-up (empty without METRICS_TOKEN).
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(PROMETHEUS_DIR / name, tmp_path / name)
    (tmp_path / "metrics_token").write_text("")
    out = promtool_ok("check", "config", "prometheus.yml", cwd=tmp_path)
    assert "SUCCESS: 13 rules found" in out


def test_promtool_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool_ok("test", "rules", "alerts_test.yml")


def test_each_alert_is_tested_firing_and_not_firing() -> None:
    fired, quiet = set(), set()
    for case in UNIT_TESTS["tests"]:
        for check in case["alert_rule_test"]:
            assert check["alertname"] in ALERTS, f"test of an unknown alert {check['alertname']}"
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert fired == set(ALERTS) and quiet == set(ALERTS)


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_the_unit_tests_catch_an_alert_that_always_or_never_fires(
    name: str, tmp_path: Path
) -> None:
    # The unit tests have teeth: with this alert's expression replaced, promtool fails them.
    shutil.copy(PROMETHEUS_DIR / "alerts_test.yml", tmp_path / "alerts_test.yml")
    for broken, label in (("vector(1)", "always"), ("vector(1) < 0", "never")):
        groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
        for group in groups["groups"]:
            for rule in group["rules"]:
                if rule["alert"] == name:
                    rule["expr"] = broken
        (tmp_path / "alerts.yml").write_text(yaml.safe_dump(groups))
        done = run_promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
        assert done.returncode != 0, f"{name} firing {label} passes the unit tests"
        assert f"alertname: {name}" in done.stdout + done.stderr


def test_scrape_jobs_find_every_replica_and_worker_of_the_compose_stack() -> None:
    jobs = {job["job_name"]: job for job in CONFIG["scrape_configs"]}
    assert set(jobs) == {"api", "worker"}
    services = COMPOSE["services"]
    serve = services["api"]["command"]
    expected = {"api": int(serve[serve.index("--port") + 1])}
    expected["worker"] = int(services["worker"]["expose"][0])
    # The worker's exporter listens on WORKER_METRICS_PORT, which compose leaves at its default
    # (the setting comes with the metrics part of issue 13; checked once both are merged).
    field = Settings.model_fields.get("worker_metrics_port")
    if field is not None:
        assert expected["worker"] == field.default
    for name, port in expected.items():
        (sd,) = jobs[name]["dns_sd_configs"]
        # The compose service name resolves to every container of the service.
        assert sd["names"] == [name] and name in services
        assert sd["type"] == "A" and sd["port"] == port
        assert jobs[name].get("metrics_path", "/metrics") == "/metrics"
        assert jobs[name]["authorization"]["credentials_file"] == "metrics_token"


def test_compose_runs_prometheus_with_this_config_and_rules() -> None:
    prometheus = COMPOSE["services"]["prometheus"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in prometheus["volumes"] if "./" in m}
    assert mounts == {
        "/etc/prometheus/prometheus.yml": "./deploy/prometheus/prometheus.yml",
        "/etc/prometheus/alerts.yml": "./deploy/prometheus/alerts.yml",
    }
    assert all(m.endswith(":ro") for m in prometheus["volumes"] if m.startswith("./"))
    assert CONFIG["rule_files"] == ["alerts.yml"]
    command = " ".join(prometheus["entrypoint"])
    assert "--config.file=/etc/prometheus/prometheus.yml" in command
    # The token file the scrape jobs read is written next to the config from METRICS_TOKEN.
    assert '"$$METRICS_TOKEN" > /etc/prometheus/metrics_token' in command
    assert "METRICS_TOKEN" in prometheus["environment"]


def test_the_readme_tells_the_operator_what_each_alert_means_and_what_to_do() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Alerts\n", 1)[1].split("\n## ", 1)[0]
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in section.splitlines()
        if line.startswith("| `")
    }
    assert set(rows) == set(ALERTS)
    for name, line in rows.items():
        assert ALERTS[name]["labels"]["severity"] in line, name
