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

What the terminal shows (`Terminal`): prompts and replies on stdout, notices (in Portuguese,
like the prompts) on stderr, each on a line of its own even in the middle of a reply; the
triage result once the server has one (`triage.updated`), after the reply it came with. No
server answering exits 3, a bad `--url` or a refused token 2, like the other commands.
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
from typing import Annotated, Any, TextIO

import httpx
import typer
from httpx_sse import EventSource, ServerSentEvent, aconnect_sse
from rich.console import Console

from backend.cli import app
from backend.cli.common import EXIT_CONFIG, EXIT_STORE, err_console, fail, load_settings
from backend.core.auth import create_token

# Connection failures after which the client reconnects rather than giving up.
_DROPPED = (httpx.TransportError, httpx.StreamError)


# What the client tells the person at the terminal (the prompts are Portuguese too).
RESUMING = "conexão perdida; retomando após o evento {last_id} em {url}"
RESTARTED = "a resposta foi interrompida no servidor e recomeça do início"
RELOADING = "alguns eventos se perderam; lendo o histórico"
RETRYING = "nenhum servidor respondeu em {url}; tentando de novo"
STREAM_CLOSED = "o servidor encerrou o fluxo de eventos ({code}); reconectando"


class ChatError(Exception):
    """The conversation cannot go on (a refused message, a deleted session, no server)."""

    exit_code = 1


class ServerUnreachable(ChatError):
    """No server answered (within the reconnect timeout)."""

    exit_code = EXIT_STORE


class TokenRefused(ChatError):
    """The server refused the bearer token: a configuration problem, like a bad secret."""

    exit_code = EXIT_CONFIG


@dataclass
class Reply:
    """One finished turn: the reply to the user message `seq` of `session_id`."""

    session_id: str
    seq: int
    text: str
    reconnects: int = 0  # streams re-opened after a drop
    restarts: int = 0  # times the server started the reply over (its generator died)
    deltas: list[tuple[str, int]] = field(default_factory=list)  # (reply_id, index) printed
    # The triage result, when this turn brought a new one (`triage.updated`).
    triage: dict[str, Any] | None = None


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
    triage: dict[str, Any] | None = None

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
        # The last triage result shown per session: the server repeats it as the case grows.
        self._triage_shown: dict[str, dict[str, Any]] = {}
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

    async def triage_status(self, session_id: str) -> dict[str, Any]:
        response = await self.http.get(f"{self.url}/api/triage/{session_id}", headers=self.headers)
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
                    raise ServerUnreachable(f"nenhum servidor respondeu em {self.url}") from None
                if attempt == 0:
                    self.on_notice(RETRYING.format(url=self.url))
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
                self.on_notice(RESUMING.format(last_id=turn.last_id, url=self.url))
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
                raise ServerUnreachable(
                    f"não foi possível retomar a resposta em {self.reconnect_timeout:g} s "
                    f"(último servidor tentado: {self.url})"
                )
        raise AssertionError("unreachable")

    async def _from_history(self, turn: _Turn, history: dict[str, Any]) -> None:
        assert turn.session_id is not None
        # Events were missed, maybe a `triage.updated` among them: read the triage too.
        status = await self.triage_status(turn.session_id)
        self._triage(turn, status.get("triage_result"))
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
                raise ChatError("a conversa não existe mais (foi apagada ou expirou)")
            self.on_notice(STREAM_CLOSED.format(code=data.get("code") or "sem código"))
            return False
        if sse.id:
            turn.last_id = sse.id
        turn.session_id = data.get("session_id") or turn.session_id
        kind = sse.event
        if kind == "message.created" and turn.seq is None:
            message = data["message"]
            if message["role"] == "user":
                turn.seq = int(message["seq"])
        elif kind == "triage.updated":
            self._triage(turn, data.get("triage_result"))
        elif kind == "reload":
            self.on_notice(RELOADING)
            turn.gap = True
            assert turn.session_id is not None
            await self._from_history(turn, await self.history(turn.session_id))
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
                raise ChatError(f"a resposta falhou: {data.get('message') or data.get('code')}")
            self._restart(turn)
        return False

    def _triage(self, turn: _Turn, result: Any) -> None:
        """Keep a triage result that is new for this session, to show after the reply."""
        assert turn.session_id is not None
        if isinstance(result, dict) and result != self._triage_shown.get(turn.session_id):
            self._triage_shown[turn.session_id] = result
            turn.triage = result

    def _restart(self, turn: _Turn) -> None:
        self.on_notice(RESTARTED)
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
            triage=turn.triage,
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
    if response.status_code == 401:
        raise TokenRefused(f"token recusado pelo servidor: {response.status_code} {detail}")
    raise ChatError(f"{response.status_code} {detail}")


# ------------------------------------------------------------------ the command


_AREAS = {
    "trabalhista": "Direito trabalhista",
    "consumidor": "Direito do consumidor",
    "familia": "Direito de família",
    "previdenciario": "Direito previdenciário",
    "criminal": "Direito criminal",
    "civil": "Direito civil",
    "tributario": "Direito tributário",
    "imobiliario": "Direito imobiliário",
    "indefinida": "a definir",
}
_LEVELS = {"baixa": "baixa", "media": "média", "alta": "alta", "urgente": "URGENTE"}


def triage_lines(result: dict[str, Any]) -> list[str]:
    """A triage result as the terminal shows it."""
    area = _AREAS.get(str(result.get("area")), str(result.get("area")))
    if result.get("sub_area"):
        area += f" · {result['sub_area']}"
    urgency = _LEVELS.get(str(result.get("urgency")), str(result.get("urgency")))
    missing = [str(m) for m in result.get("missing_information") or []]
    return [
        "── resultado da triagem ──",
        f"área: {area}",
        f"urgência: {urgency} ({result.get('urgency_reason')})",
        f"complexidade: {_LEVELS.get(str(result.get('complexity')), result.get('complexity'))}",
        f"resumo: {result.get('summary')}",
        f"próximo passo: {result.get('recommended_next_step')}",
        "ainda falta: "
        + ("; ".join(missing) if missing else "nada, as informações essenciais foram dadas"),
    ]


class Terminal:
    """What the person at the terminal sees: prompts, replies and the triage on stdout,
    notices on stderr.

    A notice can come in the middle of a reply (a dropped connection); it must not land inside
    the reply's line, so the terminal ends that line first, and the reply goes on after the
    notice on a new line with its prompt again.
    """

    REPLY_PROMPT = "triagem> "

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = Console(file=err, highlight=False, soft_wrap=True) if err else err_console
        self.at_line_start = True
        self.in_reply = False

    def write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()
            self.at_line_start = text.endswith("\n")

    def end_line(self) -> None:
        if not self.at_line_start:
            self.write("\n")

    def start_reply(self) -> None:
        self.end_line()
        self.write(self.REPLY_PROMPT)
        self.in_reply = True

    def reply_text(self, chunk: str) -> None:
        if chunk and self.in_reply and self.at_line_start:
            self.write(self.REPLY_PROMPT)
        self.write(chunk)

    def end_reply(self) -> None:
        self.end_line()
        self.in_reply = False

    def notice(self, text: str) -> None:
        self.end_line()
        self.err.print(f"[dim]({text})[/]", highlight=False, soft_wrap=True)

    def triage(self, result: dict[str, Any]) -> None:
        self.end_line()
        self.write("\n".join(triage_lines(result)) + "\n")


async def _chat(
    urls: list[str],
    token: str,
    session_id: str | None,
    messages: list[str],
    reconnect_s: float,
    term: Terminal | None = None,
) -> None:
    term = term or Terminal()
    client = ChatClient(
        urls, token, on_text=term.reply_text, on_notice=term.notice, reconnect_timeout=reconnect_s
    )
    try:
        if session_id:
            try:
                history = await client.history(session_id)
            except httpx.TransportError as exc:
                raise ServerUnreachable(f"nenhum servidor respondeu em {client.url}") from exc
            for m in history["messages"][-10:]:
                who = "você" if m["role"] == "user" else "triagem"
                term.write(f"{who}> {m['content']}\n")
        scripted = bool(messages)
        while True:
            if scripted:
                if not messages:
                    return
                text = messages.pop(0)
                term.write(f"você> {text}\n")
            else:
                try:
                    text = (await asyncio.to_thread(input, "você> ")).strip()
                except EOFError:
                    term.write("\n")
                    return
                if text in ("/sair", "/exit", "/quit"):
                    return
                if not text:
                    continue
            term.start_reply()
            reply = await client.send(text, session_id)
            term.end_reply()
            if reply.triage is not None:
                term.triage(reply.triage)
            if session_id is None:
                term.notice(
                    f"conversa {reply.session_id}; para continuá-la: --session {reply.session_id}"
                )
            session_id = reply.session_id
    finally:
        term.end_line()
        await client.aclose()


def _check_url(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise fail(f"--url {url!r} is not an http(s) URL, e.g. http://127.0.0.1:8000", EXIT_CONFIG)
    return url


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

    Type a message and Enter; the reply streams as it is generated, then the triage result
    when the server has one. /sair (or Ctrl-D) quits. Exit status: 0, 1 (a message or the
    session refused), 2 (bad usage or a refused token), 3 (no server answered).
    """
    if token is None:
        if not (user and tenant):
            raise fail("give --token (or TRIAGE_TOKEN), or --user and --tenant", EXIT_CONFIG)
        try:
            token = create_token(load_settings(), user, tenant)
        except ValueError as exc:
            raise fail(str(exc), EXIT_CONFIG) from None
    urls = [_check_url(u) for u in url or ["http://127.0.0.1:8000"]]
    try:
        asyncio.run(_chat(urls, token, session, list(message or []), reconnect_timeout))
    except ChatError as exc:
        raise fail(str(exc), exc.exit_code) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
