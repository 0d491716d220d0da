"""The OpenAPI document as the contract: limits that come from settings are filled in here.

A request schema carries the constraints the server enforces, so a client generated from it
(or a fuzzer) never sends what the server refuses. Most are static (`Field` constraints and
`json_schema_extra` hints on the models); the few that are settings, like MAX_MESSAGE_CHARS,
are set on the running app's document, built once and cached by FastAPI.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from backend.core.config import Settings

# Marks a message text in a request model's `json_schema_extra`; replaced by `maxLength`.
MAX_MESSAGE_CHARS_MARK = "x-max-message-chars"


def install_openapi(app: FastAPI, settings: Settings) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _fill_limits(build(), settings)  # FastAPI caches it in app.openapi_schema
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _fill_limits(node: Any, settings: Settings) -> None:
    if isinstance(node, dict):
        if node.pop(MAX_MESSAGE_CHARS_MARK, None) is not None:
            node["maxLength"] = settings.max_message_chars
        for value in node.values():
            _fill_limits(value, settings)
    elif isinstance(node, list):
        for value in node:
            _fill_limits(value, settings)
