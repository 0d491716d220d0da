"""The OpenAI-compatible generator against a local server speaking the real streaming format."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from backend.generators.analysis import analyze
from backend.generators.base import GenerationError
from backend.generators.factory import create_generator
from backend.generators.openai_compat import OpenAICompatibleGenerator
from backend.state.schemas import ConversationState
from tests.conftest import make_settings
from tests.generators.fake_llm import MODEL, REPLY_PIECES, VALID_KEY, FakeLLMServer
from tests.generators.helpers import chat
from tests.redis_cluster import free_port

FULL_REPLY = "".join(REPLY_PIECES)


@pytest.fixture(scope="module")
def llm_server() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def conversation() -> ConversationState:
    return chat(
        "Fui demitido sem justa causa e a empresa não pagou minha rescisão",
        "Entendi. Quando isso aconteceu (uma data aproximada já ajuda)?",
        "Foi há 2 meses",
    )


def generator(
    server: FakeLLMServer,
    scenario: str,
    client: httpx.AsyncClient | None,
    *,
    key: str = VALID_KEY,
    timeout: float = 10.0,
) -> OpenAICompatibleGenerator:
    return OpenAICompatibleGenerator(
        base_url=server.base_url(scenario),
        api_key=key,
        model=MODEL,
        timeout_seconds=timeout,
        http_client=client,
    )


async def collect(
    gen: OpenAICompatibleGenerator, conversation: ConversationState
) -> tuple[list[str], GenerationError | None]:
    """The chunks received, and the error that ended the stream (if any)."""
    chunks: list[str] = []
    try:
        async for chunk in gen.stream_reply(conversation, analyze(conversation)):
            chunks.append(chunk)
    except GenerationError as exc:
        return chunks, exc
    return chunks, None


async def test_streams_the_reply_and_sends_a_well_formed_request(
    llm_server: FakeLLMServer, http_client: httpx.AsyncClient, conversation: ConversationState
) -> None:
    chunks, error = await collect(generator(llm_server, "ok", http_client), conversation)

    assert error is None
    assert chunks == REPLY_PIECES
    assert "".join(chunks) == FULL_REPLY
    request = llm_server.fake.requests[-1]
    assert request["scenario"] == "ok"
    assert request["headers"]["authorization"] == f"Bearer {VALID_KEY}"
    assert "text/event-stream" in request["headers"]["accept"]
    body = request["json"]
    assert body["model"] == MODEL
    assert body["stream"] is True
    system, *rest = body["messages"]
    assert system["role"] == "system"
    assert "triagem jurídica" in system["content"]
    assert "direito trabalhista" in system["content"]
    # What the analysis says is still missing reaches the model, and only that.
    missing_line = next(
        line for line in system["content"].splitlines() if line.startswith("Ainda falta saber")
    )
    assert "prazos, audiências ou outras urgências" in missing_line
    assert "documentos disponíveis" in missing_line
    assert "partes envolvidas" not in missing_line  # the company was named already
    assert "quando aconteceu" not in missing_line  # "há 2 meses"
    assert rest == [{"role": m.role, "content": m.content} for m in conversation.messages]


async def test_factory_builds_it_from_settings(
    llm_server: FakeLLMServer, http_client: httpx.AsyncClient, conversation: ConversationState
) -> None:
    settings = make_settings(
        reply_generator="openai",
        llm_base_url=llm_server.base_url("ok") + "/",
        llm_api_key=VALID_KEY,
        llm_model=MODEL,
        llm_timeout_seconds=10,
    )
    gen = create_generator(settings, http_client)
    assert gen.name == "openai"
    chunks = [c async for c in gen.stream_reply(conversation, analyze(conversation))]
    assert "".join(chunks) == FULL_REPLY


async def test_connection_dropped_mid_stream(
    llm_server: FakeLLMServer, http_client: httpx.AsyncClient, conversation: ConversationState
) -> None:
    chunks, error = await collect(generator(llm_server, "drop", http_client), conversation)

    # What arrived before the drop was streamed; then a clear, retryable error.
    assert chunks == REPLY_PIECES[:2]
    assert error is not None
    assert "dropped mid-stream" in str(error)
    assert error.retryable


async def test_stream_that_ends_without_done_is_an_error(
    llm_server: FakeLLMServer, http_client: httpx.AsyncClient, conversation: ConversationState
) -> None:
    chunks, error = await collect(generator(llm_server, "no-done", http_client), conversation)

    assert chunks == REPLY_PIECES
    assert error is not None
    assert "ended before [DONE]" in str(error)


@pytest.mark.parametrize(
    ("scenario", "key", "status", "message", "retryable"),
    [
        ("ok", "sk-wrong-key", 401, "Incorrect API key provided", False),
        ("rate-limited", VALID_KEY, 429, "Rate limit reached for gpt-4o-mini", True),
        ("server-error", VALID_KEY, 500, "The server had an error", True),
    ],
)
async def test_http_errors_carry_the_providers_message(
    llm_server: FakeLLMServer,
    http_client: httpx.AsyncClient,
    conversation: ConversationState,
    scenario: str,
    key: str,
    status: int,
    message: str,
    retryable: bool,
) -> None:
    chunks, error = await collect(
        generator(llm_server, scenario, http_client, key=key), conversation
    )

    assert chunks == []
    assert error is not None
    assert error.status_code == status
    assert f"HTTP {status}" in str(error)
    assert message in str(error)
    assert error.retryable is retryable


async def test_malformed_chunk(
    llm_server: FakeLLMServer, http_client: httpx.AsyncClient, conversation: ConversationState
) -> None:
    chunks, error = await collect(generator(llm_server, "malformed", http_client), conversation)

    assert chunks == REPLY_PIECES[:1]
    assert error is not None
    assert "malformed chunk" in str(error)


async def test_text_that_cannot_be_stored_is_replaced_not_stored(
    llm_server: FakeLLMServer, http_client: httpx.AsyncClient, conversation: ConversationState
) -> None:
    """A NUL or a lone surrogate from the provider would make the stored reply unwritable
    (refused by PostgreSQL, or not encodable at all): each becomes U+FFFD."""
    chunks, error = await collect(generator(llm_server, "unstorable", http_client), conversation)

    assert error is None
    assert chunks == ["x\ufffdy\ufffdz"]


async def test_error_object_inside_the_stream(
    llm_server: FakeLLMServer, http_client: httpx.AsyncClient, conversation: ConversationState
) -> None:
    chunks, error = await collect(generator(llm_server, "error-event", http_client), conversation)

    assert chunks == REPLY_PIECES[:1]
    assert error is not None
    assert "The model is overloaded." in str(error)


@pytest.mark.parametrize("scenario", ["slow", "stall"])
async def test_timeout_before_or_during_the_stream(
    llm_server: FakeLLMServer,
    http_client: httpx.AsyncClient,
    conversation: ConversationState,
    scenario: str,
) -> None:
    gen = generator(llm_server, scenario, http_client, timeout=0.5)
    chunks, error = await collect(gen, conversation)

    assert chunks == ([] if scenario == "slow" else REPLY_PIECES[:1])
    assert error is not None
    assert "timed out" in str(error)
    assert error.retryable


async def test_unreachable_provider(conversation: ConversationState) -> None:
    # A port nothing listens on: the generator makes (and closes) its own client.
    gen = OpenAICompatibleGenerator(
        base_url=f"http://127.0.0.1:{free_port()}/v1", api_key=VALID_KEY, model=MODEL
    )
    try:
        chunks, error = await collect(gen, conversation)
    finally:
        await gen.aclose()
    assert chunks == []
    assert error is not None
    assert "connection to the LLM provider failed" in str(error)


async def test_aclose_leaves_a_shared_client_open(
    llm_server: FakeLLMServer, http_client: httpx.AsyncClient, conversation: ConversationState
) -> None:
    gen = generator(llm_server, "ok", http_client)
    await gen.aclose()
    chunks, error = await collect(gen, conversation)
    assert error is None
    assert "".join(chunks) == FULL_REPLY
