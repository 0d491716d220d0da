"""OpenTelemetry traces: off by default, on with the standard `OTEL_*` variables.

Tracing is on in a process when `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`;
`none` is off) or, with it unset, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-only
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; `OTEL_SDK_DISABLED=true` turns it off whatever
else says. The exporters, batching, service name and sampling read their usual variables.

When on: the FastAPI app, redis-py, Celery (publish and run, with the trace context carried in
the task's headers) and httpx are instrumented by the OpenTelemetry contrib packages, and the
code adds spans for what those cannot see: the state write, the reply generation and the LLM
call (`span()`). When off, nothing is instrumented and `span()` hands back one shared no-op
context manager: no tracer, no span objects, no attribute dicts.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    nullcontext,
)
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes

_OFF: AbstractContextManager[None] = nullcontext()
_OFF_ASYNC: AbstractAsyncContextManager[None] = nullcontext()
_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None


def wanted(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the OTEL_* variables ask for traces."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = _exporter_names(env)
    if exporters:
        return exporters != ["none"]
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def enabled() -> bool:
    return _tracer is not None


def configure_tracing(service_name: str, provider: TracerProvider | None = None) -> bool:
    """Turn tracing on in this process if the environment asks for it (or `provider` is
    given: tests pass one with an in-memory exporter). Idempotent; True when on."""
    global _provider, _tracer
    if _tracer is not None:
        return True
    if provider is None:
        if not wanted():
            return False
        provider = _provider_from_env(service_name)
        # The global provider is set once per process: other libraries' spans find it.
        trace.set_tracer_provider(provider)
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    for instrumentor in (RedisInstrumentor(), HTTPXClientInstrumentor(), CeleryInstrumentor()):
        instrumentor.instrument(tracer_provider=provider)
    _provider = provider
    _tracer = provider.get_tracer("triage")
    return True


def shutdown_tracing() -> None:
    """Flush and stop exporting; uninstrument the libraries (worker exit, tests)."""
    global _provider, _tracer
    if _provider is None:
        return
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    for instrumentor in (RedisInstrumentor(), HTTPXClientInstrumentor(), CeleryInstrumentor()):
        instrumentor.uninstrument()
    _provider.force_flush()
    _provider, _tracer = None, None


def flush() -> None:
    if _provider is not None:
        _provider.force_flush()


def instrument_app(app: Any) -> None:
    """Server spans for every HTTP request of a FastAPI app (when tracing is on)."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_provider,
        server_request_hook=_redact_url,
        # No span per ASGI message: an SSE stream sends one per event and keep-alive ping.
        exclude_spans=["receive", "send"],
    )


def _redact_url(span: Any, scope: dict[str, Any]) -> None:
    # EventSource passes the bearer token as `?access_token=`: not in a span either.
    from backend.core.logging import redact_tokens

    recorded = getattr(span, "attributes", None) or {}
    for key in ("http.url", "url.full", "url.query", "http.target"):
        value = recorded.get(key)
        if isinstance(value, str) and "access_token=" in value:
            span.set_attribute(key, redact_tokens(value))


def span(name: str, **attributes: str | int) -> AbstractContextManager[Any]:
    """A child span of the current one around a block; the shared no-op when tracing is off."""
    if _tracer is None:
        return _OFF
    return _tracer.start_as_current_span(name, attributes=attributes)


def aspan(name: str, **attributes: str | int) -> AbstractAsyncContextManager[Any]:
    """`span()` for an `async with` next to other async context managers."""
    if _tracer is None:
        return _OFF_ASYNC
    return _as_async(_tracer.start_as_current_span(name, attributes=attributes))


@asynccontextmanager
async def _as_async(manager: AbstractContextManager[Any]) -> AsyncIterator[Any]:
    with manager as current:
        yield current


def current_ids() -> tuple[str | None, str | None]:
    """The current trace and span ids (hex) for log lines; (None, None) when off."""
    if _tracer is None:
        return None, None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None, None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def _exporter_names(env: Mapping[str, str]) -> list[str]:
    raw = env.get("OTEL_TRACES_EXPORTER", "")
    return [name.strip().lower() for name in raw.split(",") if name.strip()]


class BackgroundCallsDropped(Sampler):
    """Drops client spans that start a trace: the Redis calls of background loops (the stream
    tailer's blocking reads, the reply sweeper, beat's lock) every second or two of every
    process, part of no request, task or reply. Everything else goes to the sampler the
    OTEL_TRACES_SAMPLER variables choose (parent-based always-on by default)."""

    def __init__(self, delegate: Sampler) -> None:
        self._delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if kind == SpanKind.CLIENT and not (
            trace.get_current_span(parent_context).get_span_context().is_valid
        ):
            return SamplingResult(Decision.DROP)
        return self._delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"BackgroundCallsDropped{{{self._delegate.get_description()}}}"


def _provider_from_env(service_name: str) -> TracerProvider:
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(
        resource=Resource.create(attributes),
        sampler=BackgroundCallsDropped(sampling._get_from_env_or_default()),
    )
    for name in _exporter_names(os.environ) or ["otlp"]:
        if name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name != "none":
            raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (otlp, console)")
    return provider
