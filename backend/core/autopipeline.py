"""Automatic pipelining: commands issued concurrently on one event loop share round trips.

Why: under load an API replica runs many state reads and writes at once, and with redis-py
most of each command's cost is client-side (connection checkout, retry wrapper, socket
syscalls, task switches), not Redis. Queuing the commands of every caller that arrives while a
pipeline is in flight, then sending them together, amortises that cost (the "natural
batching" of ioredis' autoPipelining and Lettuce). A caller alone pays no wait: the first
command of an idle loop is sent at once.

Each caller's commands stay contiguous and in order inside one non-transactional pipeline,
so a caller's own sequence still travels in a single round trip; nothing here is atomic
across callers (each atomic step is one Lua script).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence
from typing import Any

from redis import exceptions as redis_errors
from redis.client import NEVER_DECODE

from backend.core import metrics
from backend.core.errors import StoreUnavailable
from backend.core.redis import (
    UNAVAILABLE_ERRORS,
    RedisClient,
    torn_connection,
    translate_errors,
)

Command = tuple[Any, ...]
_RAW: dict[str, Any] = {NEVER_DECODE: True}
_DECODED: dict[str, Any] = {}
# A caller's commands, whether their replies stay bytes, and where the replies go (None for
# the caller that sends its own commands).
_Queued = tuple[Sequence[Command], bool, "asyncio.Future[list[Any]] | None"]


class AutoPipeline:
    def __init__(self, client: RedisClient, *, max_commands: int = 512) -> None:
        self._client = client
        self._max_commands = max_commands
        self._queue: list[_Queued] = []
        self._draining = False
        # The running loop, looked up once per busy period by the first caller that queues
        # (asyncio.get_running_loop() costs a getpid() system call on Python 3.11).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drainer: asyncio.Task[None] | None = None

    async def call(self, command: Command, *, raw: bool = False) -> Any:
        """Run one command and return its reply (raising its error): the hot path of a state
        read or a single-node write, so the idle case is a plain call with nothing around it."""
        if self._draining:
            (reply,) = await self._enqueue((command,), raw)
            if isinstance(reply, Exception):
                with translate_errors():  # a full Redis refuses one command of a batch
                    raise reply
            return reply
        self._draining = True
        try:
            return await self._client.execute_command(*command, **(_RAW if raw else _DECODED))
        except UNAVAILABLE_ERRORS as exc:  # translate_errors(), inlined on the hot path
            metrics.redis_error()
            raise StoreUnavailable(f"Redis unavailable: {exc}") from exc
        except (AttributeError, TypeError) as exc:
            if not torn_connection(exc):
                raise
            metrics.redis_error()
            raise StoreUnavailable(f"Redis unavailable: connection lost ({exc})") from exc
        finally:
            self._hand_over()

    async def execute(self, commands: Sequence[Command], *, raw: bool = False) -> list[Any]:
        """Run `commands` in order; returns their replies (exceptions as values, not raised).

        `raw` leaves bulk replies as bytes (for JSON documents: decoding them to str only for
        the JSON parser to encode them back would be wasted work).
        """
        if not self._draining:
            # Nothing in flight: send at once from this task (no hand-off to a drain task),
            # then let a drain task take whatever queued up meanwhile.
            self._draining = True
            try:
                return await self._send([(commands, raw, None)])
            finally:
                self._hand_over()
        return await self._enqueue(commands, raw)

    def _enqueue(self, commands: Sequence[Command], raw: bool) -> asyncio.Future[list[Any]]:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        future = self._loop.create_future()
        self._queue.append((commands, raw, future))
        return future

    def _hand_over(self) -> None:
        """After the caller that sent its own commands: a drain task takes what queued up."""
        if self._queue:
            assert self._loop is not None  # set by whoever queued
            # Kept: the loop holds only a weak reference to a task. Its own empty context:
            # it serves many callers, so it must not carry the ids (log lines, trace parent)
            # of the one that happened to hand over.
            self._drainer = self._loop.create_task(self._drain(), context=contextvars.Context())
        else:
            self._draining = False
            self._loop = None

    async def _send(self, batch: Sequence[_Queued]) -> list[Any]:
        with translate_errors():
            if len(batch) == 1 and len(batch[0][0]) == 1:
                # One command: a plain call costs less client time than a pipeline of one.
                (command,), raw, _ = batch[0]
                try:
                    return [
                        await self._client.execute_command(*command, **(_RAW if raw else _DECODED))
                    ]
                except redis_errors.ResponseError as exc:
                    return [exc]
            pipe = self._client.pipeline(transaction=False)
            for commands, raw, _ in batch:
                for command in commands:
                    if raw:
                        pipe.execute_command(*command, **{NEVER_DECODE: True})
                    else:
                        pipe.execute_command(*command)
            return list(await pipe.execute(raise_on_error=False))

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._take_batch()
                try:
                    replies = await self._send(batch)
                except BaseException as exc:  # every waiter hears about it, nobody hangs
                    for _, _, future in batch:
                        if future is not None and not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                start = 0
                for commands, _, future in batch:
                    if future is not None and not future.done():
                        future.set_result(replies[start : start + len(commands)])
                    start += len(commands)
        finally:
            self._draining = False
            self._loop = None

    def _take_batch(self) -> list[_Queued]:
        taken, size = 0, 0
        for commands, _, _ in self._queue:
            if taken and size + len(commands) > self._max_commands:
                break
            taken += 1
            size += len(commands)
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        return batch
