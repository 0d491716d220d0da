"""`triage chat` and its SSE client, against real uvicorn replicas that are killed mid-reply."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from backend.cli.chat import (
    RELOADING,
    RESTARTED,
    ChatClient,
    ChatError,
    Reply,
    Terminal,
    _chat,
)
from backend.core.auth import create_token
from backend.core.config import Settings
from backend.core.redis import RedisService
from tests.cli.helpers import triage
from tests.e2e.conftest import StartReplicas, start_replicas  # noqa: F401
from tests.e2e.test_replicas import GRACEFUL_EXIT
from tests.redis_cluster import free_port

pytestmark = pytest.mark.e2e
GUARD = 60  # seconds: hang guard only
MESSAGE = "Fui demitido sem justa causa e a empresa não pagou a rescisão."
# Urgent, with a known area: the offline interviewer triages it with its first reply.
EVICTION = "Meu locador quer me despejar e a audiência é amanhã. Moro no imóvel há 5 anos."
RESUMING = "conexão perdida; retomando após o evento"


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
        assert any(n.startswith(RESUMING) for n in screen.notices())
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
        assert RELOADING in screen.notices()
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
    assert "para continuá-la: --session" in result.stderr

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


class SharedScreen(io.StringIO):
    """stdout and stderr of a terminal, interleaved as they are written."""

    def __init__(self) -> None:
        super().__init__()
        self.reply_under_way = asyncio.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if len(self.getvalue().partition("triagem> ")[2].split()) >= 3:
            self.reply_under_way.set()
        return written


async def test_notices_get_their_own_line_in_the_middle_of_a_reply(
    settings: Settings,
    start_replicas: StartReplicas,  # noqa: F811
) -> None:
    # The terminal as a person sees it: stdout and stderr on one screen.
    screen = SharedScreen()
    term = Terminal(out=screen, err=screen)
    (a,) = start_replicas(1, offline_chunk_delay_ms=100)
    # A user of this test alone: the session list also holds what other tests of the run left
    # in the shared test database for a user of the same name.
    token = create_token(settings, f"ana-{uuid.uuid4().hex[:8]}", "escritorio-1")
    chatting = asyncio.create_task(_chat([a.url], token, None, [MESSAGE], 30, term))

    await asyncio.wait_for(screen.reply_under_way.wait(), GUARD)
    a.kill()  # the reply's generator dies with it: the client reconnects, the reply restarts
    await asyncio.sleep(0.5)
    await asyncio.get_running_loop().run_in_executor(None, lambda: a.spawn().wait_ready())
    await asyncio.wait_for(chatting, GUARD)

    lines = screen.getvalue().splitlines()
    notices = [line for line in lines if line.startswith("(")]
    assert any(line.startswith(f"({RESUMING}") for line in notices), lines
    assert f"({RESTARTED})" in notices, lines
    # No notice inside a line of the reply: every line is a prompt or a notice.
    for line in lines:
        assert line.startswith(("você> ", "triagem> ", "(")), lines
        if not line.startswith("("):
            assert RESUMING not in line and RESTARTED not in line, lines
    # After the restart notice the new attempt is shown whole, behind its prompt.
    restarted = lines.index(f"({RESTARTED})")
    after = [line for line in lines[restarted + 1 :] if line.startswith("triagem> ")]
    assert after, lines
    history = await _history(a.url, token)
    assert after[-1] == f"triagem> {history['messages'][-1]['content']}"


async def _history(url: str, token: str) -> dict[str, Any]:
    client = ChatClient([url], token)
    try:
        page = await client.http.get(f"{url}/api/conversations/sessions", headers=client.headers)
        (item,) = page.json()["items"]
        return await client.history(item["session_id"])
    finally:
        await client.aclose()


async def test_the_command_shows_the_triage_result_when_it_arrives(
    settings: Settings,
    start_replicas: StartReplicas,  # noqa: F811
) -> None:
    (a,) = start_replicas(1)
    second = "Tenho o contrato de locação e os recibos de aluguel."
    result = await asyncio.to_thread(
        triage,
        "chat",
        "--url",
        a.url,
        "--user",
        "ana",
        "--tenant",
        "t1",
        "-m",
        EVICTION,
        "-m",
        second,
        settings=settings,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"você> {EVICTION}" and lines[1].startswith("triagem> ")
    # The result follows the reply that brought it.
    assert lines[2] == "── resultado da triagem ──"
    assert lines[3] == "área: Direito imobiliário · despejo e locação"
    assert lines[4].startswith("urgência: URGENTE (") and "despejo" in lines[4]
    assert "ainda falta: documentos disponíveis" in lines[2:10]
    # The second answer changes the result (the documents are no longer missing): shown again.
    turn = lines.index(f"você> {second}")
    assert lines[turn + 1].startswith("triagem> ")
    assert lines[turn + 2] == "── resultado da triagem ──"
    assert not any(line.startswith("ainda falta: documentos") for line in lines[turn:])


async def test_the_command_exits_like_the_other_commands(
    settings: Settings,
    start_replicas: StartReplicas,  # noqa: F811
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    login = ("--user", "ana", "--tenant", "t1", "--reconnect-timeout", "1")
    unreachable = await asyncio.to_thread(
        triage, "chat", "--url", nobody, *login, "-m", "Olá", settings=settings
    )
    assert unreachable.returncode == 3, unreachable.stderr
    assert f"nenhum servidor respondeu em {nobody}" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    # Continuing a session starts by reading its history: no server there is the same error.
    resuming = await asyncio.to_thread(
        triage, "chat", "--url", nobody, *login, "--session", "abc", "-m", "Olá", settings=settings
    )
    assert resuming.returncode == 3 and "Traceback" not in resuming.stderr, resuming.stderr

    bad_url = await asyncio.to_thread(
        triage, "chat", "--url", "ftp://x", *login, "-m", "Olá", settings=settings
    )
    assert bad_url.returncode == 2 and "http(s) URL" in bad_url.stderr

    (a,) = start_replicas(1)
    refused = await asyncio.to_thread(
        triage, "chat", "--url", a.url, "--token", "not-a-token", "-m", "Olá", settings=settings
    )
    assert refused.returncode == 2 and "token recusado" in refused.stderr
