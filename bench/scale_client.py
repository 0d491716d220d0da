"""The load generator of `bench/scale.py`: a process of its own (`python -m bench.scale_client`).

It plays every `--of`-th conversation of the run's `--total`, from `--index` on (so several
generator processes share the ramp evenly), each its own user, all through the balancer at
`--host:--port`:

1. at `start + index / ramp_rate` (wall clock, so several generator processes ramp as one):
   `POST /api/triage` opens the session, then `GET /api/conversations/sessions/{id}/events`
   opens its event stream, which stays open to the end;
2. every uniform(20, 40) s after that (the first time after a random part of one interval),
   until `--until`, the conversation posts a message with
   `POST /api/conversations/sessions/{id}/messages` on a kept-alive connection.

Per message, times from writing the POST: its 202 answer, `message.created` of its `seq` on the
already-open stream ("first event"), and the first `message.completed` answering it (its
`in_reply_to` is at least that `seq`: a reply answers every message stored before it started).
Stream events are stamped as they are read and matched to messages at the end, so an event
that overtakes the POST's answer is matched all the same.

Writes one JSON object to `--out`: the samples of messages posted in [`--from`, `--until`]
and the errors of the whole run by kind. Nothing is retried: every failure is counted. The
replicas' JWT secret comes in `SCALE_JWT_SECRET` (not on the command line, where `ps` shows it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import time
from collections import Counter
from pathlib import Path
from typing import Any

import uvloop

from backend.core.auth import create_token
from backend.core.config import Settings
from bench.sse_chat import TEXTS
from bench.sse_client import SSEConnection

THINK_SECONDS = (20.0, 40.0)
REQUEST_TIMEOUT = 30.0
# Kept-alive connections idle longer than this are closed rather than reused: nginx closes
# its side after `keepalive_timeout` (65 s), and a request written into a closing connection
# would fail for the client's reasons, not the service's.
IDLE_REUSE_SECONDS = 30.0


class HTTPError(Exception):
    """A request that got no complete HTTP answer."""


class Pool:
    """Kept-alive HTTP/1.1 connections for the short requests (a new one when none is idle,
    so no request ever waits for a connection: the latency measured is the service's)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        now = time.monotonic()
        while self.idle:
            reader, writer, since = self.idle.pop()
            if now - since < IDLE_REUSE_SECONDS and not reader.at_eof():
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self.host, self.port)

    async def request(
        self, method: str, path: str, token: str, body: bytes = b""
    ) -> tuple[int, bytes]:
        reader, writer = await self._connection()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        try:
            writer.write(head.encode() + body)
            status, close, payload = await _response(reader)
        except BaseException:
            writer.close()
            raise
        if close:
            writer.close()
        else:
            self.idle.append((reader, writer, time.monotonic()))
        return status, payload

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


async def _response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """(status, connection closes, body) of one HTTP/1.1 response."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise HTTPError("connection closed before an answer") from exc
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip().lower()
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers.get("connection") == "close", body


class Conversation:
    """One user's session: its stream's stamps and its messages."""

    def __init__(self, index: int, token: str) -> None:
        self.index = index
        self.token = token
        self.session_id = ""
        self.created: dict[int, float] = {}  # user message seq -> when message.created came
        self.completed: list[tuple[int, float]] = []  # (in_reply_to, when), in stream order
        # Per message: [wall clock sent, perf sent, POST answer ms, seq]
        self.messages: list[list[Any]] = []
        self.stream_open = False
        self.streamed = False  # its stream was ever open


class Generator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pool = Pool(args.host, args.port)
        self.errors: Counter[str] = Counter()
        secret = os.environ["SCALE_JWT_SECRET"]
        settings = Settings(_env_file=None, jwt_secret=secret)  # type: ignore[call-arg]
        self.conversations = [
            Conversation(i, create_token(settings, f"scale-{args.run}-{i}", "bench"))
            for i in range(args.index, args.total, args.of)
        ]
        self.streams: list[SSEConnection] = []
        self.readers: list[asyncio.Task[None]] = []  # the loop holds tasks weakly
        self.closing = False

    async def run(self) -> dict[str, Any]:
        tasks = [asyncio.create_task(self.conversation(c)) for c in self.conversations]
        await asyncio.gather(*tasks)
        await self.drain()
        for stream in self.streams:
            stream.close()
        self.pool.close()
        return self.result()

    async def conversation(self, conv: Conversation) -> None:
        args = self.args
        await _sleep_until(args.start + conv.index / args.ramp_rate)
        try:
            status, body = await asyncio.wait_for(
                self.pool.request("POST", "/api/triage", conv.token), REQUEST_TIMEOUT
            )
        except (OSError, HTTPError, TimeoutError) as exc:
            self.errors[f"open_session:{_kind(exc)}"] += 1
            return
        if status != 201:
            self.errors[f"open_session:HTTP {status}"] += 1
            return
        conv.session_id = json.loads(body)["session_id"]
        path = f"/api/conversations/sessions/{conv.session_id}/events"
        try:
            stream = await asyncio.wait_for(
                SSEConnection.open(args.host, args.port, "GET", path, token=conv.token),
                REQUEST_TIMEOUT,
            )
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            self.errors[f"open_stream:{_kind(exc)}"] += 1
            return
        self.streams.append(stream)
        if stream.status != 200:
            self.errors[f"open_stream:HTTP {stream.status}"] += 1
            return
        conv.stream_open = conv.streamed = True
        # The stream stays open through the drain; its reader ends with the connection.
        self.readers.append(asyncio.create_task(self.read_stream(conv, stream)))
        await self.post_messages(conv)

    async def post_messages(self, conv: Conversation) -> None:
        path = f"/api/conversations/sessions/{conv.session_id}/messages"
        turn = 0
        # The first message after a random part of one interval: conversations out of phase,
        # as in a population that has been talking for a while (not all in step after a ramp).
        pause = random.random() * random.uniform(*THINK_SECONDS)
        while True:
            await asyncio.sleep(pause)
            pause = random.uniform(*THINK_SECONDS)
            if time.time() >= self.args.until or not conv.stream_open:
                return
            body = json.dumps({"message": TEXTS[turn % len(TEXTS)]}).encode()
            turn += 1
            record: list[Any] = [time.time(), time.perf_counter(), None, None]
            try:
                status, answer = await asyncio.wait_for(
                    self.pool.request("POST", path, conv.token, body), REQUEST_TIMEOUT
                )
            except (OSError, HTTPError, TimeoutError) as exc:
                self.errors[f"post:{_kind(exc)}"] += 1
                continue
            if status != 202:
                self.errors[f"post:HTTP {status}"] += 1
                continue
            record[2] = (time.perf_counter() - record[1]) * 1000
            record[3] = json.loads(answer)["message"]["seq"]
            conv.messages.append(record)

    async def read_stream(self, conv: Conversation, stream: SSEConnection) -> None:
        try:
            async for event in stream.events():
                now = time.perf_counter()
                if event.event == "message.created":
                    message = json.loads(event.data)["message"]
                    if message["role"] == "user":
                        conv.created[message["seq"]] = now
                elif event.event == "message.completed":
                    conv.completed.append((json.loads(event.data)["in_reply_to"], now))
                elif event.event == "error":
                    self.errors[f"stream_event:{json.loads(event.data).get('code')}"] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            if not self.closing:
                self.errors[f"stream:{_kind(exc)}"] += 1
        else:
            if not self.closing:
                self.errors["stream:ended by the server"] += 1
        conv.stream_open = False

    async def drain(self) -> None:
        """Wait (at most `--drain` s) for the replies to the messages already posted."""
        deadline = time.monotonic() + self.args.drain
        while time.monotonic() < deadline:
            if all(self._answered(c) for c in self.conversations):
                break
            await asyncio.sleep(0.5)
        self.closing = True

    @staticmethod
    def _answered(conv: Conversation) -> bool:
        if not conv.messages or not conv.stream_open:
            return True
        last = conv.messages[-1][3]
        return any(seq >= last for seq, _ in conv.completed)

    def result(self) -> dict[str, Any]:
        samples: list[tuple[float, float | None, float | None]] = []
        messages = 0
        for conv in self.conversations:
            for sent_wall, sent, post_ms, seq in conv.messages:
                messages += 1
                created = conv.created.get(seq)
                if created is None:
                    self.errors["no message.created"] += 1
                first = (created - sent) * 1000 if created is not None else None
                later = [when for answers, when in conv.completed if answers >= seq]
                if not later:
                    self.errors["no message.completed"] += 1
                done = (min(later) - sent) * 1000 if later else None
                if self.args.since <= sent_wall <= self.args.until:
                    samples.append((post_ms, first, done))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "conversations": len(self.conversations),
            "sessions_opened": sum(1 for c in self.conversations if c.session_id),
            "streams_opened": sum(1 for c in self.conversations if c.streamed),
            "messages": messages,
            "samples": samples,
            "errors": dict(self.errors),
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
        }


def _kind(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer in {REQUEST_TIMEOUT:.0f} s"
    return type(exc).__name__


async def _sleep_until(wall: float) -> None:
    delay = wall - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--run", required=True, help="run id, part of every user id")
    parser.add_argument("--total", type=int, required=True, help="conversations in the run")
    parser.add_argument("--index", type=int, default=0, help="this generator's number")
    parser.add_argument("--of", type=int, default=1, help="how many generators")
    parser.add_argument("--start", type=float, required=True, help="ramp start (epoch s)")
    parser.add_argument("--ramp-rate", type=float, required=True, help="conversations/s")
    parser.add_argument("--since", type=float, required=True, help="steady state from (epoch)")
    parser.add_argument("--until", type=float, required=True, help="last post (epoch)")
    parser.add_argument("--drain", type=float, default=30.0)
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    result = uvloop.run(Generator(args).run())
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
