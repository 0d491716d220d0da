"""deploy/nginx.conf: what SSE through a proxy needs, and where it sends requests."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from backend.main import create_app
from tests.conftest import make_settings
from tests.deploy.nginx_conf import Block, parse, seconds

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


def test_nginx_health_endpoint_matches_the_compose_healthcheck() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    check = " ".join(compose["services"]["nginx"]["healthcheck"]["test"])
    assert "/nginx-health" in check
    loc = location_for("/nginx-health")
    assert loc.args == ["=", "/nginx-health"] and loc.get("return")[0] == "200"  # type: ignore[index]
