"""Logging for every process (API, worker, beat, `triage serve`): JSON lines or readable text.

`LOG_FORMAT=json` writes one JSON object per line (python-json-logger) with `timestamp`,
`level`, `logger`, `message`, and the ids of what the line is about: `request_id` (the
X-Request-ID that asgi-correlation-id takes or makes, and returns), `session_id` (set by the
routes that take one and by the reply runner for its job), `task_id` (set for a Celery task by
its signals), and `trace_id` / `span_id` when tracing is on. `LOG_FORMAT=text` is for reading
in a terminal. Message texts and tokens are never logged: code logs ids, and the loggers that
dump payloads at DEBUG are held at INFO (see `_PAYLOAD_LOGGERS`).
"""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar
from typing import Any

from asgi_correlation_id import correlation_id
from fastapi import Request
from pythonjsonlogger.json import JsonFormatter

from backend.core import tracing

# EventSource cannot set headers, so the events stream also takes `?access_token=`; access logs
# must not keep the token (anyone reading the logs could replay it until it expires).
_TOKEN_IN_URL = re.compile(r"([?&]access_token=)[^&\s\"]*")

session_id_var: ContextVar[str | None] = ContextVar("log_session_id", default=None)
task_id_var: ContextVar[str | None] = ContextVar("log_task_id", default=None)

# Loggers that write payloads when verbose, held at the level where they stop: sse-starlette
# logs every SSE chunk (message texts) at DEBUG, httpcore/hpack headers (bearer tokens) at
# DEBUG, SQLAlchemy's engine every statement with its parameters (message texts) at INFO.
_PAYLOAD_LOGGERS = {
    "sse_starlette": logging.INFO,
    "httpcore": logging.INFO,
    "hpack": logging.INFO,
    "multipart": logging.INFO,
    "python_multipart": logging.INFO,
    "sqlalchemy.engine": logging.WARNING,
}
# uvicorn installs its own handlers (text, propagate off): its lines go through ours instead.
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]%(ids)s %(message)s"
_JSON_FIELDS = ("levelname", "name", "message")
_RENAMED = {"levelname": "level", "name": "logger"}


def redact_tokens(text: str) -> str:
    return _TOKEN_IN_URL.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    """Removes bearer tokens from URLs in log records (uvicorn's access log passes the path
    with its query string as an argument)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        if isinstance(record.msg, str):
            record.msg = redact_tokens(record.msg)
        return True


def _redacted(arg: object) -> object:
    # httpx passes its URL object, not a str.
    if isinstance(arg, str) or (hasattr(arg, "query") and "access_token=" in str(arg)):
        return redact_tokens(str(arg))
    return arg


class ContextIds(logging.Filter):
    """Puts the ids of the current request / session / task / trace on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = correlation_id.get()
        record.session_id = session_id_var.get()
        record.task_id = task_id_var.get()
        record.trace_id, record.span_id = tracing.current_ids()
        return True


class _Json(JsonFormatter):
    def process_log_record(self, log_record: dict[str, Any]) -> dict[str, Any]:
        # "where there is one": absent ids are left out rather than written as null.
        return {k: v for k, v in log_record.items() if v is not None}


class _Text(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ids = [
            f"{name}={value}"
            for name in ("session_id", "task_id", "trace_id")
            if (value := getattr(record, name, None))
        ]
        record.ids = (" " + " ".join(ids)) if ids else ""
        if getattr(record, "request_id", None) is None:
            record.request_id = "-"
        return super().format(record)


def make_formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return _Json(
            list(_JSON_FIELDS),
            rename_fields=dict(_RENAMED),
            timestamp=True,  # "timestamp": ISO 8601 in UTC
            json_ensure_ascii=False,  # Portuguese stays readable
            # Only the fields above and the ids: no process/thread noise.
            # uvicorn's `color_message` is its message again, with terminal colour codes.
            reserved_attrs=[*_reserved(), "ids", "color_message"],
        )
    return _Text(_TEXT_FORMAT)


def _reserved() -> list[str]:
    from pythonjsonlogger.core import RESERVED_ATTRS

    return [a for a in RESERVED_ATTRS if a not in _JSON_FIELDS]


def configure_logging(level: str, log_format: str = "text") -> None:
    """Route every logger of the process through one handler on stderr in `log_format`.

    Idempotent. When the root logger already has handlers that are not ours (pytest's), they
    are kept as they are and only get the ids filter.
    """
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "triage_handler", False)]
    if not root.handlers:
        stream = logging.StreamHandler()
        stream.triage_handler = True  # type: ignore[attr-defined]
        root.addHandler(stream)
        ours = [stream]
    for handler in ours:
        handler.setFormatter(make_formatter(log_format))
    for handler in root.handlers:
        if not any(isinstance(f, ContextIds) for f in handler.filters):
            handler.addFilter(ContextIds())
    root.setLevel(level.upper())
    if ours:
        # Python's warnings (Celery's "running as root", deprecations) as log lines too.
        logging.captureWarnings(True)
    if ours:
        for name in _UVICORN_LOGGERS:
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True
    for name, floor in _PAYLOAD_LOGGERS.items():
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < floor:
            logger.setLevel(floor)
    # uvicorn's access log, and httpx's request line (the CLI's event stream URL).
    for name in ("uvicorn.access", "httpx"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


def bind_session(session_id: str | None) -> None:
    """Log lines of the current task (and tasks it starts) carry this session id."""
    session_id_var.set(session_id)


async def session_from_path(request: Request) -> None:
    """Router dependency: routes with a `{session_id}` log it on every line they write."""
    session_id_var.set(request.path_params.get("session_id"))


def bind_task(task_id: str | None, session_id: str | None = None) -> None:
    """Log lines of a Celery task carry its id (and its session's, for one-session tasks)."""
    task_id_var.set(task_id)
    session_id_var.set(session_id)
