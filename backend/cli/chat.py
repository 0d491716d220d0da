"""`triage chat`: a terminal chat client over SSE that survives dropped connections.

Each message is posted to `POST /api/agents/chat`, whose response streams the reply as SSE,
with an `Idempotency-Key` of its own: when the connection drops before the message's
`message.created` event arrived (so the client cannot know whether it was stored), the client
posts it again with the same key, to the next `--url`, and the server answers with the first
post's session and stream instead of storing it twice.
Every event carries its Redis stream id, and the client remembers the last one it handled.
When the connection drops (a replica restarted or was killed, a proxy cut it), the client
reconnects, to the next `--url` in turn, to `GET /api/conversations/sessions/{id}/events` with
`Last-Event-ID`, so the server sends exactly the events it has not seen, and the reply goes on
where it stopped. Deltas are also checked by position (`reply_id`, `index`), so nothing is ever
printed twice; if the replica generating the reply died, the server restarts the reply (an
`error` event with `retrying`), and the client says so and prints the new attempt. A `reload`
event (the events after our id are gone) is answered by reading the history over REST.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
import typer
from httpx_sse import EventSource, ServerSentEvent, aconnect_sse

from backend.cli import app
from backend.cli.common import EXIT_CONFIG, err_console, fail, load_settings
from backend.core.auth import create_token

# Connection failures after which the client reconnects rather than giving up.
_DROPPED = (httpx.TransportError, httpx.StreamError)


class ChatError(Exception):
    """The conversation cannot go on (a refused message, a deleted session, no server)."""


@dataclass
class Reply:
    """One finished turn: the reply to the user message `seq` of `session_id`."""

    session_id: str
    seq: int
    text: str
    reconnects: int = 0  # streams re-opened after a drop
    restarts: int = 0  # times the server started the reply over (its generator died)
    deltas: list[tuple[str, int]] = field(default_factory=list)  # (reply_id, index) printed


@dataclass
class _Turn:
    session_id: str | None
    message: str
    seq: int | None = None
    last_id: str | None = None
    reply_id: str | None = None
    parts: list[str] = field(default_factory=list)
    gap: bool = False  # missed deltas (after a reload): wait for the completed message
    final: str | None = None
    restarts: int = 0
    printed: list[tuple[str, int]] = field(default_factory=list)

    def answers(self, data: dict[str, Any]) -> bool:
        return self.seq is not None and int(data.get("in_reply_to") or 0) >= self.seq


class ChatClient:
    def __init__(
        self,
        urls: list[str],
        token: str,
        *,
        on_text: Callable[[str], None] = lambda _: None,
        on_notice: Callable[[str], None] = lambda _: None,
        reconnect_timeout: float = 60.0,
        read_timeout: float = 60.0,
    ) -> None:
        self._urls = itertools.cycle([u.rstrip("/") for u in urls])
        self.url = next(self._urls)
        self.headers = {"Authorization": f"Bearer {token}"}
        self.on_text, self.on_notice = on_text, on_notice
        self.reconnect_timeout = reconnect_timeout
        # The server pings idle streams every 15 s: a longer silence is a dead connection.
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=read_timeout))

    async def aclose(self) -> None:
        await self.http.aclose()

    # ---------------------------------------------------------------- REST

    async def history(self, session_id: str) -> dict[str, Any]:
        response = await self.http.get(
            f"{self.url}/api/conversations/sessions/{session_id}", headers=self.headers
        )
        await _raise_for_error(response)
        return dict(response.json())

    # ----------------------------------------------------------------- chat

    async def send(self, message: str, session_id: str | None = None) -> Reply:
        """Post `message` (to a new session when `session_id` is None); return its reply."""
        turn = _Turn(session_id, message)
        body: dict[str, Any] = {"message": message}
        if session_id:
            body["session_id"] = session_id
        # One key per message, sent unchanged with every retry of it (see the module doc).
        headers = {**self.headers, "Idempotency-Key": str(uuid.uuid4())}
        deadline = time.monotonic() + self.reconnect_timeout
        for attempt in itertools.count():
            try:
                async with aconnect_sse(
                    self.http,
                    "POST",
                    f"{self.url}/api/agents/chat",
                    json=body,
                    headers=headers,
                ) as source:
                    await _raise_for_error(source.response)
                    turn.session_id = source.response.headers.get("x-session-id") or session_id
                    if await self._consume(source, turn):
                        return self._finish(turn, reconnects=0)
                    if turn.seq is not None:
                        break  # the stream ended early (the replica is shutting down)
                    raise httpx.RemoteProtocolError("the stream ended before message.created")
            except (httpx.ConnectError, httpx.ConnectTimeout):
                # Nothing reached a server: posting again, to the next URL, sends it once.
                if time.monotonic() > deadline:
                    raise ChatError(f"no server answered at {self.url}") from None
                self.url = next(self._urls)
                await asyncio.sleep(_backoff(attempt))
            except _DROPPED:
                if turn.seq is not None:
                    break  # our message.created arrived: it is stored; resume its reply
                # Stored or not, we cannot tell: post it again with the same key (next URL).
                if time.monotonic() > deadline:
                    raise ChatError(f"no complete answer from {self.url}") from None
                self.url = next(self._urls)
                await asyncio.sleep(_backoff(attempt))
        return await self._resume(turn, dropped=True)

    async def follow(self, session_id: str, seq: int, after: str | None) -> Reply:
        """Follow the reply to user message `seq` from stream position `after`."""
        return await self._resume(_Turn(session_id, "", seq=seq, last_id=after), dropped=False)

    async def _resume(self, turn: _Turn, *, dropped: bool) -> Reply:
        """Read the session's event stream after `turn.last_id` until the reply is complete,
        reconnecting (next URL, backoff) whenever the stream drops."""
        assert turn.session_id is not None
        url = f"/api/conversations/sessions/{turn.session_id}/events"
        reconnects = 0
        deadline = time.monotonic() + self.reconnect_timeout
        for attempt in itertools.count():
            if dropped:
                self.url = next(self._urls)
                await asyncio.sleep(_backoff(attempt))
                reconnects += 1
                self.on_notice(
                    f"connection lost; resuming after event {turn.last_id} at {self.url}"
                )
            dropped = True
            try:
                headers = dict(self.headers)
                if turn.last_id:
                    headers["Last-Event-ID"] = turn.last_id
                async with aconnect_sse(
                    self.http, "GET", self.url + url, headers=headers
                ) as source:
                    await _raise_for_error(source.response)
                    deadline = time.monotonic() + self.reconnect_timeout  # connected: progress
                    if await self._consume(source, turn):
                        return self._finish(turn, reconnects)
            except _DROPPED:
                pass
            if time.monotonic() > deadline:
                raise ChatError(f"could not resume the reply within {self.reconnect_timeout:g} s")
        raise AssertionError("unreachable")

    def _from_history(self, turn: _Turn, history: dict[str, Any]) -> None:
        for m in history["messages"]:
            if m["role"] == "assistant" and int(
                (m.get("metadata") or {}).get("in_reply_to") or 0
            ) >= (turn.seq or 0):
                self._complete(turn, m["content"])
                return

    # --------------------------------------------------------------- events

    async def _consume(self, source: EventSource, turn: _Turn) -> bool:
        """Handle events until the reply is complete (True) or the stream ends (False)."""
        async for sse in source.aiter_sse():
            if await self._handle(sse, turn):
                return True
        return False

    async def _handle(self, sse: ServerSentEvent, turn: _Turn) -> bool:
        data: dict[str, Any] = json.loads(sse.data) if sse.data else {}
        if sse.event == "error" and "reply_id" not in data:
            # About this connection, not stored in the stream (no id of its own).
            if data.get("code") == "session_not_found":
                raise ChatError(data.get("message") or "the session is gone")
            self.on_notice(data.get("message") or "the stream was closed")
            return False
        if sse.id:
            turn.last_id = sse.id
        turn.session_id = data.get("session_id") or turn.session_id
        kind = sse.event
        if kind == "message.created" and turn.seq is None:
            message = data["message"]
            if message["role"] == "user":
                turn.seq = int(message["seq"])
        elif kind == "reload":
            self.on_notice("events were missed; reading the history")
            turn.gap = True
            assert turn.session_id is not None
            self._from_history(turn, await self.history(turn.session_id))
            return turn.final is not None
        elif not turn.answers(data):
            return False  # another reply on the same session
        elif kind == "message.started":
            if turn.reply_id is not None and data["reply_id"] != turn.reply_id:
                self._restart(turn)
            turn.reply_id = data["reply_id"]
        elif kind == "message.delta":
            if turn.reply_id is None:
                turn.reply_id = data["reply_id"]
            elif data["reply_id"] != turn.reply_id:
                self._restart(turn)
                turn.reply_id = data["reply_id"]
            if not turn.gap and int(data["index"]) == len(turn.parts):
                turn.parts.append(data["delta"])
                turn.printed.append((turn.reply_id, int(data["index"])))
                self.on_text(data["delta"])
        elif kind == "message.completed":
            if data["reply_id"] != turn.reply_id and turn.parts:
                self._restart(turn)
            self._complete(turn, data["message"]["content"])
            return True
        elif kind == "error":
            if not data.get("retrying"):
                raise ChatError(data.get("message") or "the reply failed")
            self._restart(turn)
        return False

    def _restart(self, turn: _Turn) -> None:
        self.on_notice("the reply was interrupted on the server and starts over")
        turn.restarts += 1
        turn.parts, turn.reply_id, turn.gap = [], None, False

    def _complete(self, turn: _Turn, content: str) -> None:
        printed = "".join(turn.parts)
        if not content.startswith(printed):
            self._restart(turn)
            printed = ""
        self.on_text(content[len(printed) :])
        turn.final = content

    def _finish(self, turn: _Turn, reconnects: int) -> Reply:
        assert turn.session_id is not None and turn.seq is not None and turn.final is not None
        return Reply(
            session_id=turn.session_id,
            seq=turn.seq,
            text=turn.final,
            reconnects=reconnects,
            restarts=turn.restarts,
            deltas=turn.printed,
        )


def _backoff(attempt: int) -> float:
    return float(min(2.0, 0.2 * 2**attempt))


async def _raise_for_error(response: httpx.Response) -> None:
    """A 4xx is the end (ChatError with the server's message); a 5xx is worth a retry."""
    if response.status_code < 400:
        return
    await response.aread()
    try:
        error = response.json()["error"]
        detail = f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        detail = response.reason_phrase
    if response.status_code >= 500:
        raise httpx.TransportError(f"{response.status_code} {detail}")
    raise ChatError(f"{response.status_code} {detail}")


# ------------------------------------------------------------------ the command


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _notice(text: str) -> None:
    err_console.print(f"[dim]({text})[/]", highlight=False, soft_wrap=True)


async def _chat(
    urls: list[str], token: str, session_id: str | None, messages: list[str], reconnect_s: float
) -> None:
    client = ChatClient(
        urls, token, on_text=_write, on_notice=_notice, reconnect_timeout=reconnect_s
    )
    try:
        if session_id:
            history = await client.history(session_id)
            for m in history["messages"][-10:]:
                who = "você" if m["role"] == "user" else "triagem"
                _write(f"{who}> {m['content']}\n")
        scripted = bool(messages)
        while True:
            if scripted:
                if not messages:
                    return
                text = messages.pop(0)
                _write(f"você> {text}\n")
            else:
                try:
                    text = (await asyncio.to_thread(input, "você> ")).strip()
                except EOFError:
                    _write("\n")
                    return
                if text in ("/sair", "/exit", "/quit"):
                    return
                if not text:
                    continue
            _write("triagem> ")
            reply = await client.send(text, session_id)
            _write("\n")
            if session_id is None:
                _notice(f"session {reply.session_id}; continue it with --session")
            session_id = reply.session_id
    finally:
        await client.aclose()


@app.command()
def chat(
    url: Annotated[
        list[str] | None,
        typer.Option(
            "--url",
            help="API base URL; repeat it for several replicas, tried in turn on reconnect.",
        ),
    ] = None,
    token: Annotated[
        str | None, typer.Option(envvar="TRIAGE_TOKEN", help="Bearer token (or TRIAGE_TOKEN).")
    ] = None,
    user: Annotated[
        str | None, typer.Option(help="Without a token: mint one for this user (development).")
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="The tenant of --user.")] = None,
    session: Annotated[
        str | None, typer.Option("--session", "-s", help="Continue this session.")
    ] = None,
    message: Annotated[
        list[str] | None,
        typer.Option("--message", "-m", help="Send these messages in order and exit."),
    ] = None,
    reconnect_timeout: Annotated[
        float, typer.Option(help="Give up resuming a reply after this many seconds.", min=1)
    ] = 60.0,
) -> None:
    """Chat with the interviewer in the terminal over SSE; resumes after a dropped connection.

    Type a message and Enter; the reply streams as it is generated. /sair (or Ctrl-D) quits.
    """
    if token is None:
        if not (user and tenant):
            raise fail("give --token (or TRIAGE_TOKEN), or --user and --tenant", EXIT_CONFIG)
        try:
            token = create_token(load_settings(), user, tenant)
        except ValueError as exc:
            raise fail(str(exc), EXIT_CONFIG) from None
    try:
        asyncio.run(
            _chat(
                url or ["http://127.0.0.1:8000"],
                token,
                session,
                list(message or []),
                reconnect_timeout,
            )
        )
    except ChatError as exc:
        _write("\n")
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
