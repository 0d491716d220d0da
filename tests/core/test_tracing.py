"""Traces (OpenTelemetry), recorded by the SDK's in-memory exporter: what an operator's trace
viewer would show for one chat message, and nothing at all when tracing is off."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind

from backend.core import tracing
from backend.core.config import Settings
from backend.core.redis import RedisService
from tests.conftest import client_for, make_settings
from tests.generators.fake_llm import VALID_KEY, FakeLLMServer
from tests.sse_helpers import bearer, events

MESSAGE = "Fui demitido sem justa causa e a empresa não pagou minhas verbas rescisórias."


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert tracing.configure_tracing("triage-test", provider=provider)
    try:
        yield exporter
    finally:
        tracing.shutdown_tracing()
        provider.shutdown()


@pytest.fixture(scope="module")
def llm_server() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer().start()
    try:
        yield server
    finally:
        server.stop()


def by_id(finished: tuple[ReadableSpan, ...]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in finished}


def ancestors(span: ReadableSpan, index: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    chain = []
    while span.parent is not None and span.parent.span_id in index:
        span = index[span.parent.span_id]
        chain.append(span)
    return chain


def named(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in finished if s.name == name]


async def chat(settings: Settings) -> str:
    async for api in client_for(settings):
        response, evs = await events(
            api, "POST", "/api/agents/chat", json={"message": MESSAGE}, headers=bearer()
        )
        assert response.status_code == 200
        assert evs[-1].event == "message.completed"
        return response.headers["x-session-id"]
    raise AssertionError("no client")


@pytest.fixture
async def redis_cleanup(settings: Settings, redis_service: RedisService) -> AsyncIterator[None]:
    yield  # depends on redis_service: the test's keys are purged after the app stopped


async def test_http_request_parents_the_state_write_and_its_redis_call(
    spans: InMemorySpanExporter, settings: Settings, redis_cleanup: None
) -> None:
    sid = await chat(settings)

    finished = spans.get_finished_spans()
    index = by_id(finished)
    [server] = [s for s in finished if s.kind == SpanKind.SERVER]
    assert server.attributes is not None
    assert server.attributes.get("http.route") == "/api/agents/chat"
    writes = [
        s
        for s in named(finished, "state.write")
        if s.attributes and s.attributes.get("session_id") == sid
    ]
    # The user's message is written while serving the request: a child of the HTTP span.
    assert any(server in ancestors(w, index) for w in writes)
    # Each state write is one Redis round trip (the Lua script), a child of the write span.
    for write in writes:
        calls = [
            s
            for s in finished
            if s.parent is not None
            and s.parent.span_id == write.context.span_id
            and s.attributes
            and s.attributes.get("db.system") == "redis"
        ]
        assert calls, f"no Redis call under {write.name}"
        assert all(c.context.trace_id == server.context.trace_id for c in calls)


async def test_reply_generation_parents_the_llm_call(
    spans: InMemorySpanExporter,
    llm_server: FakeLLMServer,
    settings: Settings,
    redis_cleanup: None,
) -> None:
    settings = make_settings(
        key_prefix=settings.key_prefix,
        reply_generator="openai",
        llm_base_url=llm_server.base_url("ok"),
        llm_api_key=VALID_KEY,
    )
    await chat(settings)

    finished = spans.get_finished_spans()
    index = by_id(finished)
    [generate] = named(finished, "reply.generate")
    [llm] = named(finished, "llm.call")
    assert llm.parent is not None and llm.parent.span_id == generate.context.span_id
    # The HTTP call to the provider (httpx's span) sits under the LLM call.
    [outgoing] = [s for s in finished if s.kind == SpanKind.CLIENT and "POST" in s.name]
    assert outgoing.parent is not None and outgoing.parent.span_id == llm.context.span_id
    # The reply was started by the chat request: one trace from the POST to the LLM.
    [server] = [s for s in finished if s.kind == SpanKind.SERVER]
    assert server in ancestors(generate, index)


async def test_off_by_default_nothing_is_instrumented(settings: Settings) -> None:
    assert not tracing.wanted({})
    assert not tracing.wanted({"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.wanted(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}
    )
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing.wanted({"OTEL_TRACES_EXPORTER": "console"})

    from backend.main import create_app

    app = create_app(settings)
    assert not tracing.enabled()
    assert not any("OpenTelemetry" in m.cls.__name__ for m in app.user_middleware)  # type: ignore[attr-defined]
    # redis-py's methods are the library's own (not wrapped), and hand spans are one shared
    # no-op object: no span is made.
    assert not hasattr(redis.asyncio.Redis.execute_command, "__wrapped__")
    assert tracing.span("state.write") is tracing.span("reply.generate")


def test_background_redis_calls_start_no_trace_but_requests_and_their_calls_do() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=tracing.BackgroundCallsDropped(ALWAYS_ON))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("XREAD", kind=SpanKind.CLIENT):
        pass  # a stream tailer's blocking read, outside any request
    with (
        tracer.start_as_current_span("POST /api/agents/chat", kind=SpanKind.SERVER),
        tracer.start_as_current_span("EVALSHA", kind=SpanKind.CLIENT),
    ):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["EVALSHA", "POST /api/agents/chat"]


async def test_the_token_in_a_stream_url_is_not_kept_in_the_request_span(
    spans: InMemorySpanExporter, settings: Settings, redis_cleanup: None
) -> None:
    token = bearer()["Authorization"].removeprefix("Bearer ")
    async for api in client_for(settings):
        # The events stream (EventSource cannot send headers) of a session that is not there.
        response = await api.get(f"/api/conversations/sessions/nobody/events?access_token={token}")
        assert response.status_code == 404  # the token was read: it authenticated the request
    [server] = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    recorded = dict(server.attributes or {})
    assert "access_token=[redacted]" in str(recorded)
    assert token not in str(recorded)
