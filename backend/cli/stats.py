"""`triage stats`: counts over the hot tier."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from backend.cli import app
from backend.cli.common import console, load_settings, open_manager, run
from backend.core.config import Settings
from backend.durability.refused import RefusedSessions
from backend.state.service import ConversationStateManager


async def gather_stats(manager: ConversationStateManager, settings: Settings) -> dict[str, Any]:
    """The hot tier's counts plus the sessions PostgreSQL refused (oldest first, up to 20)."""
    stats = await manager.get_system_stats()
    entries = await RefusedSessions(manager, settings).entries(limit=20)
    stats["refused"] = [e.as_dict() for e in entries]
    return stats


async def _stats(settings: Settings) -> dict[str, Any]:
    async with open_manager(settings) as manager:
        return await gather_stats(manager, settings)


def stats_table(stats: dict[str, Any], title: str = "Hot state (Redis)") -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    table.add_row("conversations", str(stats["conversations"]))
    table.add_row("orchestrations", str(stats["orchestrations"]))
    for status, count in sorted(stats["conversations_by_status"].items()):
        table.add_row(f"  status {status}", str(count))
    for kind, count in sorted(stats["conversations_by_kind"].items()):
        table.add_row(f"  kind {kind}", str(count))
    table.add_row("users", str(stats["users"]))
    table.add_row("messages (hot)", str(stats["messages_total"]))
    table.add_row("dirty sessions (not yet snapshotted)", str(stats["dirty_sessions"]))
    table.add_row("snapshot lag", f"{stats['snapshot_lag_seconds']:.1f} s")
    refused = stats.get("refused_sessions", 0)
    table.add_row(
        "refused by PostgreSQL (kept dirty, retried)",
        f"[bold red]{refused}[/]" if refused else "0",
    )
    now = time.time()
    for entry in stats.get("refused", []):
        wait = max(0.0, entry["next_attempt_at"] - now)
        table.add_row(
            f"  {entry['session_id']}",
            # Escaped: a reason may cite a path like `$.messages[1].seq`, not markup.
            escape(
                f"{entry['reason']} ({entry['code']}; {entry['attempts']} attempt(s), next in "
                f"{wait:.0f} s)"
            ),
        )
    table.add_row("Redis memory", stats["redis_used_memory_human"])
    return table


@app.command()
def stats(
    json_output: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a table.")
    ] = False,
) -> None:
    """Sessions, users, messages, snapshot backlog and memory of the hot tier (SCAN-based)."""
    result = run(_stats(load_settings()))
    if json_output:
        typer.echo(json.dumps(result, ensure_ascii=False))
    else:
        console.print(stats_table(result))
