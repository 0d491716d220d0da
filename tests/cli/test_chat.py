"""`triage chat` and its SSE client, against real uvicorn replicas that are killed mid-reply."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from backend.cli.chat import ChatClient, ChatError, Reply
from backend.core.auth import create_token
from backend.core.config import Settings
from backend.core.redis import RedisService
from tests.cli.helpers import triage
from tests.e2e.conftest import StartReplicas, start_replicas  # noqa: F401
from tests.e2e.test_replicas import GRACEFUL_EXIT

pytestmark = pytest.mark.e2e
GUARD = 60  # seconds: hang guard only
MESSAGE = "Fui demitido sem justa causa e a empresa não pagou a rescisão."
RESTARTED = "the reply was interrupted on the server and starts over"


class Screen:
    """What the terminal shows: reply text and notices, in order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self.delta_seen = asyncio.Event()

    def text(self, chunk: str) -> None:
        if chunk:
            self.items.append(("text", chunk))
            if sum(kind == "text" for kind, _ in self.items) >= 2:
                self.delta_seen.set()

    def notice(self, message: str) -> None:
        self.items.append(("notice", message))

    def shown(self, after_notice: str | None = None) -> str:
        items = self.items
        if after_notice is not None:
            last = max(i for i, (k, v) in enumerate(items) if k == "notice" and v == after_notice)
            items = items[last + 1 :]
        return "".join(v for k, v in items if k == "text")

    def notices(self) -> list[str]:
        return [v for k, v in self.items if k == "notice"]


def client_for(settings: Settings, urls: list[str], screen: Screen) -> ChatClient:
    token = create_token(settings, "ana", "escritorio-1")
    return ChatClient(
        urls, token, on_text=screen.text, on_notice=screen.notice, reconnect_timeout=30
    )


async def stored_reply(client: ChatClient, reply: Reply) -> str:
    history = await client.history(reply.session_id)
    (answer,) = [
        m
        for m in history["messages"]
        if m["role"] == "assistant" and m["metadata"].get("in_reply_to") == reply.seq
    ]
    return str(answer["content"])


def assert_printed_once(reply: Reply) -> None:
    """Each printed delta is a distinct position of one reply attempt, in order."""
    assert len(set(reply.deltas)) == len(reply.deltas)
    by_reply: dict[str, list[int]] = {}
    for reply_id, index in reply.deltas:
        by_reply.setdefault(reply_id, []).append(index)
    for indexes in by_reply.values():
        assert indexes == list(range(len(indexes)))


async def test_sigterm_mid_reply_resumes_on_the_other_replica_without_duplicates(
    settings: Settings,
    start_replicas: StartReplicas,  # noqa: F811
) -> None:
    # Slow chunks, streams closed fast on shutdown, a long grace for the reply itself: the
    # connection drops while replica A keeps writing the reply into Redis.
    a, b = start_replicas(
        2, offline_chunk_delay_ms=150, sse_shutdown_grace_seconds=0, shutdown_grace_seconds=30
    )
    screen = Screen()
    client = client_for(settings, [a.url, b.url], screen)
    try:
        sending = asyncio.create_task(client.send(MESSAGE))
        await asyncio.wait_for(screen.delta_seen.wait(), GUARD)
        terminating = asyncio.get_running_loop().run_in_executor(None, a.terminate)
        reply = await asyncio.wait_for(sending, GUARD)
        assert await asyncio.wait_for(terminating, GUARD) in GRACEFUL_EXIT
        assert reply.reconnects >= 1 and reply.restarts == 0
        assert any(n.startswith("connection lost; resuming after event") for n in screen.notices())
        # The terminal shows the reply exactly once, and it is what the session stored.
        assert screen.shown() == reply.text == await stored_reply(client, reply)
        assert_printed_once(reply)
    finally:
        await client.aclose()


async def test_replica_killed_and_restarted_mid_reply(
    settings: Settings,
    start_replicas: StartReplicas,  # noqa: F811
) -> None:
    (a,) = start_replicas(1, offline_chunk_delay_ms=100)
    screen = Screen()
    client = client_for(settings, [a.url], screen)
    try:
        sending = asyncio.create_task(client.send(MESSAGE))
        await asyncio.wait_for(screen.delta_seen.wait(), GUARD)
        a.kill()  # SIGKILL: the reply's generator dies with it
        await asyncio.sleep(0.5)  # the client meets a refused connection at least once
        await asyncio.get_running_loop().run_in_executor(None, lambda: a.spawn().wait_ready())
        reply = await asyncio.wait_for(sending, GUARD)
        # The restarted replica finds the dead reply (expired lease) and generates it again;
        # the client says so and shows the new attempt in full, once.
        assert reply.restarts == 1 and reply.reconnects >= 1
        assert screen.shown(after_notice=RESTARTED) == reply.text
        assert reply.text == await stored_reply(client, reply)
        assert_printed_once(reply)
    finally:
        await client.aclose()


async def test_reload_event_reads_the_history(
    settings: Settings,
    redis_service: RedisService,
    start_replicas: StartReplicas,  # noqa: F811
) -> None:
    (a,) = start_replicas(1)
    screen = Screen()
    client = client_for(settings, [a.url], screen)
    try:
        first = await client.send(MESSAGE)
        # Redis lost the session's event stream (a restart, a trim): resuming after an old id
        # gets a `reload` event, and the client takes the finished reply from the history.
        await redis_service.delete(f"{settings.key_prefix}:s:{{{first.session_id}}}:events")
        screen.items.clear()
        again = await asyncio.wait_for(client.follow(first.session_id, first.seq, "1-0"), GUARD)
        assert "events were missed; reading the history" in screen.notices()
        assert again.text == first.text == screen.shown()
    finally:
        await client.aclose()


async def test_refusals_are_clear(settings: Settings, start_replicas: StartReplicas) -> None:  # noqa: F811
    (a,) = start_replicas(1)
    client = client_for(settings, [a.url], Screen())
    try:
        with pytest.raises(ChatError, match="404"):
            await client.send("Olá", session_id="no-such-session")
        with pytest.raises(ChatError, match="422"):
            await client.send("")
    finally:
        await client.aclose()


async def test_the_command(settings: Settings, start_replicas: StartReplicas) -> None:  # noqa: F811
    (a,) = start_replicas(1)
    run: Callable[..., Any] = triage
    result = await asyncio.to_thread(
        run,
        "chat",
        "--url",
        a.url,
        "--user",
        "ana",
        "--tenant",
        "t1",
        "-m",
        MESSAGE,
        "-m",
        "Foi em 3 de novembro.",
        settings=settings,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"você> {MESSAGE}"
    assert lines[1].startswith("triagem> ") and len(lines[1]) > len("triagem> ")
    assert lines[2] == "você> Foi em 3 de novembro."
    assert "continue it with --session" in result.stderr

    no_token = await asyncio.to_thread(run, "chat", "--url", a.url, "-m", "x", settings=settings)
    assert no_token.returncode == 2 and "--token" in no_token.stderr
    missing = await asyncio.to_thread(
        run,
        "chat",
        "--url",
        a.url,
        "--user",
        "ana",
        "--tenant",
        "t1",
        "--session",
        "nope",
        "-m",
        "x",
        settings=settings,
    )
    assert missing.returncode == 1 and "404" in missing.stderr
