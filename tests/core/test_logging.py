"""The two log formats: the ids a line is about, in JSON or readable text."""

from __future__ import annotations

import json
import logging

import httpx
from asgi_correlation_id import correlation_id

from backend.core.logging import (
    ContextIds,
    RedactTokens,
    make_formatter,
    redact_tokens,
    session_id_var,
)


def record(message: str, *args: object) -> logging.LogRecord:
    rec = logging.LogRecord(
        "backend.replies.runner", logging.WARNING, __file__, 1, message, args, None
    )
    ContextIds().filter(rec)
    return rec


def test_json_lines_carry_the_ids_there_are_and_omit_the_others() -> None:
    request = correlation_id.set("req-1")
    session = session_id_var.set("sess-1")
    try:
        line = make_formatter("json").format(record("reply for %s failed", "sess-1"))
    finally:
        correlation_id.reset(request)
        session_id_var.reset(session)
    parsed = json.loads(line)
    assert (
        parsed.items()
        >= {
            "level": "WARNING",
            "logger": "backend.replies.runner",
            "message": "reply for sess-1 failed",
            "request_id": "req-1",
            "session_id": "sess-1",
        }.items()
    )
    assert parsed["timestamp"].endswith("+00:00")
    assert "task_id" not in parsed and "trace_id" not in parsed

    outside = json.loads(make_formatter("json").format(record("beat: tick")))
    assert "request_id" not in outside and "session_id" not in outside


def test_text_lines_are_readable_with_the_ids() -> None:
    session = session_id_var.set("sess-2")
    try:
        line = make_formatter("text").format(record("lease lost"))
    finally:
        session_id_var.reset(session)
    assert line.endswith("WARNING backend.replies.runner [-] session_id=sess-2 lease lost")


def test_tokens_in_urls_are_redacted() -> None:
    assert redact_tokens("GET /events?access_token=abc.def&x=1") == (
        "GET /events?access_token=[redacted]&x=1"
    )


def test_httpx_request_lines_do_not_keep_a_token_in_the_url() -> None:
    rec = logging.LogRecord(
        "httpx",
        logging.INFO,
        __file__,
        1,
        "HTTP Request: %s %s",
        ("GET", httpx.URL("http://api/api/conversations/sessions/s/events?access_token=tok.en")),
        None,
    )
    RedactTokens().filter(rec)
    assert rec.getMessage() == (
        "HTTP Request: GET http://api/api/conversations/sessions/s/events?access_token=[redacted]"
    )
