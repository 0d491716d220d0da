"""deploy/grafana: the dashboard reads the contract's metrics with valid PromQL, and compose
provisions it with its datasource."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.prometheus_tools import ROOT, metric_names, run_promtool, unknown_metrics

GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD: dict[str, Any] = json.loads((GRAFANA_DIR / "dashboards" / "triage.json").read_text())
PANELS = [p for p in DASHBOARD["panels"] if p["type"] != "row"]
EXPRS = [(p["title"], t["expr"]) for p in PANELS for t in p["targets"]]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_panel_queries_contract_metrics() -> None:
    assert PANELS
    for panel in PANELS:
        assert panel["targets"], f"{panel['title']} shows nothing"
    for title, expr in EXPRS:
        assert metric_names(expr), f"{title}: {expr} reads no metric"
        assert not unknown_metrics(expr), f"{title} reads {unknown_metrics(expr)}"


def test_the_dashboard_shows_the_figures_operators_watch() -> None:
    read = {name for _, expr in EXPRS for name in metric_names(expr)}
    wanted = {
        "triage_http_requests_total",  # requests and 5xx
        "triage_http_request_duration_seconds_bucket",  # latency p99
        "triage_sse_streams_open",
        "triage_replies_total",  # replies/s and failures
        "triage_message_ack_seconds_bucket",  # ack p99
        "triage_dirty_sessions",
        "triage_dirty_oldest_age_seconds",
        "triage_snapshot_refused_sessions",
        "triage_celery_queue_depth",
        "triage_celery_workers",
        "triage_redis_used_memory_bytes",
        "triage_redis_maxmemory_bytes",
        "up",
    }
    assert wanted <= read, f"not on the dashboard: {sorted(wanted - read)}"


def test_every_expression_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses each expression as a recording rule (Grafana's $__rate_interval aside).
    rules = [
        {"record": f"dashboard:expr_{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, (_, expr) in enumerate(EXPRS)
    ]
    (tmp_path / "exprs.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    done = run_promtool("check", "rules", "exprs.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


def test_panels_use_the_provisioned_datasource_and_do_not_overlap() -> None:
    provisioned = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = provisioned["datasources"]
    assert source["type"] == "prometheus"
    # The compose service and Prometheus's port.
    assert source["url"] == "http://prometheus:9090" and "prometheus" in COMPOSE["services"]
    taken: set[tuple[int, int]] = set()
    for panel in PANELS:
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}
        assert all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"])
        pos = panel["gridPos"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert pos["x"] + pos["w"] <= 24 and not cells & taken, panel["title"]
        taken |= cells
    assert len({p["id"] for p in DASHBOARD["panels"]}) == len(DASHBOARD["panels"])


def test_compose_provisions_grafana_with_the_dashboard() -> None:
    grafana = COMPOSE["services"]["grafana"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in grafana["volumes"] if "./" in m}
    assert mounts == {
        "/etc/grafana/provisioning": "./deploy/grafana/provisioning",
        "/etc/grafana/dashboards": "./deploy/grafana/dashboards",
    }
    assert all(m.endswith(":ro") for m in grafana["volumes"] if m.startswith("./"))
    provider = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "triage.yml").read_text()
    )
    (entry,) = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"] == "/etc/grafana/dashboards"
    # The admin password comes from the environment, never from the repository.
    password = grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]*\}", password)
    home_path = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home_path == "/etc/grafana/dashboards/triage.json"
