"""`triage monitor`: a live view of the hot tier, Redis memory, the task queue and snapshots.

Read-only. Each frame takes the state manager's stats (a SCAN: fine every few seconds for an
operator, not something to run in a tight loop), Redis INFO, the Celery queue's depth on the
broker and a ping of the workers.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import typer
from celery import Celery
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from backend.cli import app
from backend.cli.common import console, load_settings, open_manager, run
from backend.cli.stats import gather_stats, stats_table
from backend.core.config import Settings
from backend.state.service import ConversationStateManager
from workers.config import create_celery_app
from workers.inspect import BROKER_ERRORS, ping_workers, queue_depth


@dataclass
class Frame:
    taken_at: datetime
    stats: dict[str, Any]
    memory: dict[str, Any]
    queue: str
    queue_depth: int | None  # None: the broker could not be read
    workers: list[str]


def _queue_and_workers(celery: Celery, queue: str, ping: bool) -> tuple[int | None, list[str]]:
    """Depth of the task queue and the workers answering a ping (none asked when unreachable)."""
    depth = queue_depth(celery, queue)
    if not ping or depth is None:
        return depth, []
    try:
        return depth, ping_workers(celery)
    except BROKER_ERRORS:
        return depth, []


async def take_frame(
    manager: ConversationStateManager, celery: Celery, settings: Settings, ping: bool
) -> Frame:
    stats = await gather_stats(manager, settings)
    memory = await manager.memory_info()
    depth, workers = await asyncio.to_thread(
        _queue_and_workers, celery, settings.celery_queue, ping
    )
    return Frame(datetime.now().astimezone(), stats, memory, settings.celery_queue, depth, workers)


def render(frame: Frame, ping: bool) -> Group:
    used, limit = int(frame.memory.get("used_memory", 0)), int(frame.memory.get("maxmemory", 0))
    memory = Table(title="Redis memory", show_header=False, title_justify="left")
    memory.add_column("what", style="bold")
    memory.add_column("value", justify="right")
    memory.add_row("used", frame.memory.get("used_memory_human", "?"))
    memory.add_row(
        "limit",
        f"{frame.memory.get('maxmemory_human')} ({used / limit:.0%} used)" if limit else "none",
    )
    memory.add_row("policy", str(frame.memory.get("maxmemory_policy", "?")))

    tasks = Table(title="Tasks", show_header=False, title_justify="left")
    tasks.add_column("what", style="bold")
    tasks.add_column("value", justify="right")
    depth = "unreachable" if frame.queue_depth is None else str(frame.queue_depth)
    tasks.add_row(f"queue depth ({frame.queue})", depth)
    if ping:
        tasks.add_row("workers answering", str(len(frame.workers)))
        for name in frame.workers:
            tasks.add_row("", name)

    header = Text(f"triage monitor: {frame.taken_at:%Y-%m-%d %H:%M:%S %Z}", style="bold")
    return Group(header, stats_table(frame.stats, title="Sessions (hot)"), memory, tasks)


async def _monitor(settings: Settings, once: bool, interval: float, ping: bool) -> None:
    celery = create_celery_app(settings)
    async with open_manager(settings) as manager:
        started = time.monotonic()
        frame = await take_frame(manager, celery, settings, ping)
        if once:
            console.print(render(frame, ping))
            return
        with Live(render(frame, ping), console=console, screen=False, auto_refresh=False) as live:
            while True:
                # Frames start every `interval` seconds, however long one takes to gather.
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
                started = time.monotonic()
                frame = await take_frame(manager, celery, settings, ping)
                live.update(render(frame, ping), refresh=True)


@app.command()
def monitor(
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.", min=0.5)] = 5.0,
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
    ping: Annotated[
        bool, typer.Option("--ping/--no-ping", help="Ping the Celery workers (1 s per frame).")
    ] = True,
) -> None:
    """Live view: active sessions, Redis memory, task queue depth, snapshot lag (Ctrl-C stops)."""
    try:
        run(_monitor(load_settings(), once, interval, ping))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
