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
from collections.abc import Sequence
from typing import Any

from backend.core.redis import RedisClient, translate_errors

Command = tuple[Any, ...]


class AutoPipeline:
    def __init__(self, client: RedisClient, *, max_commands: int = 512) -> None:
        self._client = client
        self._max_commands = max_commands
        self._queue: list[tuple[Sequence[Command], asyncio.Future[list[Any]]]] = []
        self._draining = False

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Run `commands` in order; returns their replies (exceptions as values, not raised)."""
        if not self._draining:
            # Nothing in flight: send at once from this task (no hand-off to a drain task),
            # then let a drain task take whatever queued up meanwhile.
            self._draining = True
            try:
                return await self._send(commands)
            finally:
                if self._queue:
                    asyncio.get_running_loop().create_task(self._drain())
                else:
                    self._draining = False
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append((commands, future))
        return await future

    async def _send(self, commands: Sequence[Command]) -> list[Any]:
        with translate_errors():
            pipe = self._client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute(raise_on_error=False))

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._take_batch()
                try:
                    with translate_errors():
                        pipe = self._client.pipeline(transaction=False)
                        for commands, _ in batch:
                            for command in commands:
                                pipe.execute_command(*command)
                        replies = await pipe.execute(raise_on_error=False)
                except BaseException as exc:  # every waiter hears about it, nobody hangs
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                start = 0
                for commands, future in batch:
                    if not future.done():
                        future.set_result(list(replies[start : start + len(commands)]))
                    start += len(commands)
        finally:
            self._draining = False

    def _take_batch(self) -> list[tuple[Sequence[Command], asyncio.Future[list[Any]]]]:
        taken, size = 0, 0
        for commands, _ in self._queue:
            if taken and size + len(commands) > self._max_commands:
                break
            taken += 1
            size += len(commands)
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        return batch
