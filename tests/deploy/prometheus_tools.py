"""What the Prometheus and Grafana tests share: the metric names of the contract, the metric
names a PromQL expression reads, and the real `promtool`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"

# The metric names fixed for issue 13 (backend/core/metrics.py defines them), with their type:
# rules and dashboards may only read these, plus Prometheus's own `up`.
CONTRACT = {
    "triage_http_requests_total": "counter",
    "triage_http_request_duration_seconds": "histogram",
    "triage_sse_streams_open": "gauge",
    "triage_sse_events_total": "counter",
    "triage_sse_streams_cut_total": "counter",
    "triage_stream_catch_up_reads_total": "counter",
    "triage_replies_total": "counter",
    "triage_reply_duration_seconds": "histogram",
    "triage_llm_analysis_calls_total": "counter",
    "triage_llm_analysis_fallbacks_total": "counter",
    "triage_llm_analysis_duration_seconds": "histogram",
    "triage_message_ack_seconds": "histogram",
    "triage_state_writes_total": "counter",
    "triage_state_conflicts_total": "counter",
    "triage_state_retries_total": "counter",
    "triage_redis_errors_total": "counter",
    "triage_store_unavailable_responses_total": "counter",
    "triage_state_not_replicated_total": "counter",  # issue 14: STATE_WRITE_REPLICAS
    "triage_rate_limited_total": "counter",
    "triage_hub_readers": "gauge",
    "triage_redis_connections_in_use": "gauge",
    "triage_dirty_sessions": "gauge",
    "triage_dirty_oldest_age_seconds": "gauge",
    "triage_snapshot_batches_total": "counter",
    "triage_snapshot_rows_total": "counter",
    "triage_snapshot_duration_seconds": "histogram",
    "triage_snapshot_refused_sessions": "gauge",
    "triage_archived_sessions_total": "counter",
    "triage_restored_sessions_total": "counter",
    "triage_purged_sessions_total": "counter",
    "triage_celery_tasks_total": "counter",
    "triage_celery_task_duration_seconds": "histogram",
    "triage_celery_queue_depth": "gauge",
    "triage_celery_workers": "gauge",
    # Added with the broker behind Redis Sentinel (issue 14).
    "triage_broker_replicas": "gauge",
    "triage_redis_used_memory_bytes": "gauge",
    "triage_redis_maxmemory_bytes": "gauge",
    # Added with the 10,000-conversation work (issue 17).
    "triage_event_loop_lag_seconds": "histogram",
    "triage_gc_pause_seconds": "histogram",
}
SCRAPE_METRICS = {"up"}

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
_KEYWORDS |= {"and", "or", "unless", "offset", "inf", "nan"}
_IDENT = re.compile(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*")  # not the unit of "10m"


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (functions, label names and keywords left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in _IDENT.finditer(text):
        rest = text[match.end() :].lstrip()
        if not rest.startswith("(") and match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names


def contract_name(series: str) -> str | None:
    """The contract metric a series name belongs to (a histogram's _bucket/_sum/_count too)."""
    if series in CONTRACT:
        return series
    base = re.sub(r"_(bucket|sum|count)$", "", series)
    return base if CONTRACT.get(base) == "histogram" else None


def unknown_metrics(expr: str) -> set[str]:
    return {n for n in metric_names(expr) if n not in SCRAPE_METRICS and not contract_name(n)}


def promtool() -> str:
    """The real promtool (Debian's `prometheus` package), installed when missing."""
    if not shutil.which("promtool"):
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / "apt_install.sh"), "promtool", "prometheus"],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.fail(f"promtool is missing and could not be installed:\n{done.stderr}")
    path = shutil.which("promtool")
    assert path, "promtool still not on PATH after installing prometheus"
    return path


def run_promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, cwd=cwd)
