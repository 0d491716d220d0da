"""The OpenAPI document is the contract: schemathesis generates requests from it and runs them
against a real replica (uvicorn), and every answer must be one the document promises.

Fails on any 5xx, any status a route does not declare, any body or header that does not match
its declared schema, and any schema-valid request that is refused (400/422). Bounded and
reproducible: a fixed seed and a few examples per route. The open-ended event stream is left
out (it never ends); the chat POST streams one reply and ends, so it is in.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, seed, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from backend.core.http import ErrorBody
from backend.core.text import STORABLE_NON_BLANK_PATTERN
from backend.main import create_app
from tests.conftest import TEST_REDIS_URL, make_settings
from tests.e2e.replicas import Replica, replica_env
from tests.sse_helpers import bearer

# The document the replica serves (same code, same default limits), built without connecting.
# Development, so that the dev token route is in it too.
schema = (
    schemathesis.openapi.from_dict(create_app(make_settings(environment="development")).openapi())
    # Never ends: an open event stream.
    .exclude(path="/api/conversations/sessions/{session_id}/events")
    # Answers its documented 503 here, where no Celery worker runs (tests/workers covers it).
    .exclude(path="/health/celery")
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    positive_data_acceptance,
]


@pytest.fixture(scope="module")
def replica() -> Iterator[str]:
    """One API replica under uvicorn with its own key prefix (and Celery queue under it)."""
    prefix = make_settings().key_prefix
    server = Replica(
        "contract",
        replica_env(
            prefix,
            environment="development",
            offline_chunk_delay_ms=0,
            celery_queue=f"{prefix}:celery",
        ),
    )
    try:
        yield server.spawn().wait_ready().url
    finally:
        server.stop()
        client = redis.Redis.from_url(TEST_REDIS_URL)
        try:
            for key in client.scan_iter(f"{prefix}:*", count=500):
                client.delete(key)
        finally:
            client.close()


@pytest.mark.e2e
@schema.parametrize()
@seed(20_261_129)
@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_answer_is_one_the_openapi_promises(case: Case, replica: str) -> None:
    if case.headers and "Idempotency-Key" in case.headers:
        # A key names one request: generated cases reuse short keys with other bodies, which is
        # the documented 422 `idempotency_key_reused`, not a refusal of valid data.
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
    case.call_and_validate(base_url=replica, headers=bearer(), checks=CHECKS, timeout=30)


def test_every_error_status_is_documented_with_the_one_error_shape() -> None:
    document = create_app(make_settings()).openapi()
    error_ref = f"#/components/schemas/{ErrorBody.__name__}"
    assert "HTTPValidationError" not in document["components"]["schemas"]  # FastAPI's {detail}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": error_ref}, (method, path, status)


def test_request_schemas_carry_the_limits_the_server_enforces() -> None:
    settings = make_settings(max_message_chars=321)
    schemas = create_app(settings).openapi()["components"]["schemas"]
    for name in ("PostMessageRequest", "ChatRequest", "StartTriageRequest"):
        message = schemas[name]["properties"]["message"]
        # Not empty, not blank, at most MAX_MESSAGE_CHARS of this app's settings.
        assert (message["minLength"], message["maxLength"]) == (1, 321)
        assert message["pattern"] == STORABLE_NON_BLANK_PATTERN
    assert schemas["ChatRequest"]["properties"]["session_id"]["anyOf"][0]["pattern"]


def test_every_route_declares_the_errors_its_plumbing_can_answer() -> None:
    """What no route code raises itself is still declared: 401 wherever a token is needed,
    400/413/422 wherever a JSON body is read (a new route cannot forget them silently)."""
    document = create_app(make_settings(environment="development")).openapi()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            declared = set(operation["responses"])
            if operation.get("security"):
                assert "401" in declared, (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "422"} <= declared, (method, path)
            if "{session_id}" in path:
                assert {"404", "422"} <= declared, (method, path)
