"""deploy/nginx.conf: what SSE through a proxy needs, and where it sends requests."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from backend.core.config import Settings
from backend.main import create_app
from tests.conftest import make_settings
from tests.deploy.nginx_conf import Block, parse, seconds
from tests.redis_cluster import free_port

ROOT = Path(__file__).resolve().parents[2]
CONF = parse((ROOT / "deploy" / "nginx.conf").read_text())
SSE_PATHS = ["/api/agents/chat", "/api/conversations/sessions/3f2a9c1e/events"]
PLAIN_PATHS = ["/api/conversations/sessions/3f2a9c1e", "/api/conversations", "/health/ready"]


def location_for(path: str) -> Block:
    """The location nginx picks for `path`: exact match, then the first matching regex, then
    the longest prefix (the part of nginx's rule these locations need)."""
    (server,) = CONF.find("server")
    locations = [b for b in server.blocks if b.name == "location"]
    for loc in locations:
        if loc.args[0] == "=" and loc.args[1] == path:
            return loc
    for loc in locations:
        if loc.args[0] in ("~", "~*") and re.search(
            loc.args[1], path, re.IGNORECASE if loc.args[0] == "~*" else 0
        ):
            return loc
    prefixes = [loc for loc in locations if len(loc.args) == 1 and path.startswith(loc.args[0])]
    return max(prefixes, key=lambda loc: len(loc.args[0]))


def test_sse_routes_stream_unbuffered_over_http11() -> None:
    for path in SSE_PATHS:
        loc = location_for(path)
        assert loc.get("proxy_pass") == ["http://triage_api"], path
        assert loc.get("proxy_buffering") == ["off"], path
        assert loc.get("proxy_cache") == ["off"], path
        assert loc.get("proxy_http_version") == ["1.1"], path
        assert ["Connection", ""] in loc.all("proxy_set_header"), path
        assert loc.get("gzip") == ["off"], path
        # Long enough for a conversation that idles between messages.
        assert seconds(loc.get("proxy_read_timeout")[0]) >= 3600  # type: ignore[index]
        assert seconds(loc.get("proxy_send_timeout")[0]) >= 3600  # type: ignore[index]


WS_PATHS = ["/api/conversations/ws", "/api/conversations/sessions/3f2a9c1e/ws"]


def test_websocket_routes_upgrade_the_connection() -> None:
    for path in WS_PATHS:
        loc = location_for(path)
        assert loc.get("proxy_pass") == ["http://triage_api"], path
        assert loc.get("proxy_http_version") == ["1.1"], path
        assert ["Upgrade", "$http_upgrade"] in loc.all("proxy_set_header"), path
        assert ["Connection", "upgrade"] in loc.all("proxy_set_header"), path
        assert seconds(loc.get("proxy_read_timeout")[0]) >= 3600  # type: ignore[index]
    for path in SSE_PATHS + PLAIN_PATHS:
        assert ["Connection", "upgrade"] not in location_for(path).all("proxy_set_header"), path


def test_the_sse_paths_are_the_apis_streaming_routes() -> None:
    """Every route answering text/event-stream is one the SSE location matches, and only
    those are."""
    paths = create_app(make_settings()).openapi()["paths"]
    streaming = {
        path
        for path, methods in paths.items()
        for op in methods.values()
        if "text/event-stream" in str(op.get("responses", {}))
    }
    assert streaming == {
        "/api/agents/chat",
        "/api/conversations/sessions/{session_id}/events",
    }
    sse = location_for(SSE_PATHS[0])
    for path in paths:
        concrete = path.replace("{session_id}", "3f2a9c1e")
        assert (location_for(concrete) is sse) == (path in streaming), path


def test_other_routes_are_proxied_but_not_held_open() -> None:
    sse = location_for(SSE_PATHS[0])
    for path in PLAIN_PATHS:
        loc = location_for(path)
        assert loc is not sse, path
        assert loc.get("proxy_pass") == ["http://triage_api"], path
        assert loc.get("proxy_http_version") == ["1.1"], path
        assert seconds((loc.get("proxy_read_timeout") or ["60s"])[0]) <= 120, path


def test_event_streams_are_never_gzipped() -> None:
    (http,) = CONF.find("http")
    gzip_types = http.get("gzip_types") or []
    assert "text/event-stream" not in gzip_types and "*" not in gzip_types


def test_upstream_is_the_compose_api_service() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    (upstream,) = CONF.find("upstream")
    assert upstream.args == ["triage_api"]
    (server,) = upstream.all("server")
    host, port = server[0].split(":")
    assert host in compose["services"]
    api_command = compose["services"][host]["command"]
    assert api_command[api_command.index("--port") + 1] == port
    # `resolve` re-reads the replica set after `--scale`; it needs a shared-memory zone.
    assert "resolve" in server[1:] and upstream.get("zone")
    (http,) = CONF.find("http")
    assert http.get("resolver")


def test_replicas_keep_idle_connections_longer_than_nginx() -> None:
    """nginx must be the side that closes an idle upstream connection: a replica closing one
    just as nginx reuses it fails that request with a 502 (seen in `bench/scale.py` under load,
    with uvicorn's 5 s default against nginx's 60 s)."""
    import inspect

    from backend.cli.server import serve

    (upstream,) = CONF.find("upstream")
    assert upstream.get("keepalive")  # connections are reused at all
    nginx_idle = seconds(upstream.get("keepalive_timeout")[0])  # type: ignore[index]
    replica_idle = inspect.signature(serve).parameters["timeout_keep_alive"].default
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    command = compose["services"]["api"]["command"]
    if "--timeout-keep-alive" in command:
        replica_idle = int(command[command.index("--timeout-keep-alive") + 1])
    assert replica_idle > nginx_idle


def test_nginx_health_endpoint_matches_the_compose_healthcheck() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    check = " ".join(compose["services"]["nginx"]["healthcheck"]["test"])
    assert "/nginx-health" in check
    loc = location_for("/nginx-health")
    assert loc.args == ["=", "/nginx-health"] and loc.get("return")[0] == "200"  # type: ignore[index]


def test_tokens_in_urls_stay_out_of_the_access_log(tmp_path: Path) -> None:
    """The file's own `map` and `log_format`, run by a real nginx on a loopback port."""
    nginx = "/usr/sbin/nginx"  # Debian's, installed by the project's script when missing
    script = ROOT / "scripts" / "apt_install.sh"
    installed = subprocess.run(
        ["bash", str(script), nginx, "nginx-light"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert installed.returncode == 0, f"nginx could not be installed: {installed.stderr}"
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    found = re.search(r"^\s*map \$request \$loggable_request \{.*?^\s*\}", text, re.S | re.M)
    log_format = re.search(r"^\s*log_format main .*?;", text, re.S | re.M)
    assert found and log_format and '"$loggable_request"' in log_format.group(0)
    port = free_port()
    temp = " ".join(
        f"{kind}_temp_path {tmp_path}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        f"""
        worker_processes 1;
        pid {tmp_path}/nginx.pid;
        error_log {tmp_path}/error.log warn;
        events {{ worker_connections 64; }}
        http {{
            {found.group(0)}
            {log_format.group(0)}
            access_log {tmp_path}/access.log main;
            {temp}
            server {{ listen 127.0.0.1:{port}; location / {{ return 204; }} }}
        }}
        """
    )
    proc = subprocess.Popen(
        [nginx, "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1)
                break
            except httpx.TransportError:
                errors = (tmp_path / "error.log").read_text() if proc.poll() is not None else ""
                assert proc.poll() is None, errors
                assert time.monotonic() < deadline
                time.sleep(0.05)
        stream = "/api/conversations/sessions/s1/events"
        httpx.get(f"http://127.0.0.1:{port}{stream}?access_token=eyJ.segredo-1&last_event_id=0-0")
        httpx.get(f"http://127.0.0.1:{port}{stream}?last_event_id=0-0&access_token=eyJ.segredo-2")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    logged = (tmp_path / "access.log").read_text()
    assert "segredo" not in logged
    assert f"GET {stream}?access_token=[redacted]&last_event_id=0-0 HTTP/1.1" in logged
    assert f"GET {stream}?last_event_id=0-0&access_token=[redacted] HTTP/1.1" in logged
    assert '"GET /ready HTTP/1.1" 204' in logged  # everything else is logged as it was


# --------------------------------------------------------------------------- the whole file, run


@contextmanager
def running_nginx(tmp_path: Path, upstream_port: int) -> Iterator[str]:
    """deploy/nginx.conf run by a real nginx on a loopback port, its upstream one local port.

    Only what ties it to Docker is replaced: the DNS resolver, the `api` host (and `resolve`,
    newer than Debian's nginx), the listen port, and stdout/stderr logs and paths."""
    nginx = "/usr/sbin/nginx"
    installed = subprocess.run(
        ["bash", str(ROOT / "scripts" / "apt_install.sh"), nginx, "nginx-light"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert installed.returncode == 0, f"nginx could not be installed: {installed.stderr}"
    port = free_port()
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    temp = " ".join(
        f"{kind}_temp_path {tmp_path}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    for old, new in [
        ("worker_processes auto;", f"worker_processes 1; pid {tmp_path}/nginx.pid;"),
        ("resolver 127.0.0.11 valid=10s ipv6=off;", temp),
        ("server api:8000 resolve;", f"server 127.0.0.1:{upstream_port};"),
        ("listen 80;", f"listen 127.0.0.1:{port};"),
        ("access_log /dev/stdout main;", f"access_log {tmp_path}/access.log main;"),
        ("error_log /dev/stderr warn;", f"error_log {tmp_path}/error.log warn;"),
    ]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    (tmp_path / "nginx.conf").write_text(text)
    proc = subprocess.Popen(
        [nginx, "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"{url}/nginx-health", timeout=1)
                break
            except httpx.TransportError:
                errors = (tmp_path / "error.log").read_text() if proc.poll() is not None else ""
                assert proc.poll() is None, errors
                assert time.monotonic() < deadline
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def assert_json_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code and error["message"], error
    return error


def test_nginx_answers_its_own_errors_in_the_api_error_shape(tmp_path: Path) -> None:
    """No replica answering, or a body over nginx's limit: JSON like the API, never HTML."""
    with running_nginx(tmp_path, upstream_port=free_port()) as url:  # nothing listens there
        down = httpx.get(f"{url}/api/conversations/sessions", timeout=10)
        error = assert_json_error(down, 502, "upstream_unavailable")
        assert down.headers["retry-after"] == "1"
        assert error["request_id"] == down.headers["x-request-id"]
        huge = httpx.post(f"{url}/api/triage", content=b"x" * 300_000, timeout=10)
        assert_json_error(huge, 413, "body_too_large")
        # Metrics are scraped from the replicas directly, never served through the proxy.
        metrics = httpx.get(f"{url}/metrics", timeout=10)
        assert_json_error(metrics, 404, "not_found")
    assert "rid=" + error["request_id"] in (tmp_path / "access.log").read_text()


async def test_nginx_passes_the_apis_answers_through_with_one_request_id(
    tmp_path: Path, settings: Settings, serve: Callable[[Settings], Awaitable[str]]
) -> None:
    """The replica's own errors (its 503 too) are not replaced, and nginx's request id is the
    API's."""
    # A broker nobody listens on: /health/celery answers its own 503 whatever workers other
    # tests run.
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"
    live_api = await serve(settings.model_copy(update={"celery_broker_url": dead_broker}))
    upstream_port = int(live_api.rsplit(":", 1)[1])
    with running_nginx(tmp_path, upstream_port) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            missing = await client.get("/api/nothing-here")
            unauthorized = await client.get("/api/conversations/sessions")
            no_broker = await client.get("/health/celery")  # the API's own 503
    assert_json_error(missing, 404, "not_found")
    assert_json_error(unauthorized, 401, "unauthorized")
    assert_json_error(no_broker, 503, "broker_unavailable")
    logged = (tmp_path / "access.log").read_text()
    for response in (missing, unauthorized, no_broker):
        assert f"rid={response.headers['x-request-id']}" in logged


async def test_a_websocket_chat_runs_through_nginx(tmp_path: Path, live_api: str) -> None:
    """The file's upgrade directives, run by a real nginx in front of a live replica."""
    from tests.conversations.ws_helpers import message, read_until, recv, send, socket, ws_url
    from tests.sse_helpers import bearer

    upstream_port = int(live_api.rsplit(":", 1)[1])
    with running_nginx(tmp_path, upstream_port) as url:
        async with socket(ws_url(url), bearer()) as ws:
            await send(ws, message("Fui demitido ontem."))
            ack = await recv(ws)
            frames = await read_until(ws, lambda f: f.get("event") == "message.completed")
    assert ack["type"] == "ack" and ack["seq"] == 1
    assert frames[-1]["data"]["in_reply_to"] == 1
