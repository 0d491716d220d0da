"""`triage clear-cache`: evict snapshotted sessions from Redis (they come back by read-through)."""

from __future__ import annotations

from typing import Annotated

import typer

from backend.cli import app
from backend.cli.common import EXIT_CONFIG, console, fail, load_settings, run
from backend.cli.hybrid import open_hybrid
from backend.core.config import Settings
from backend.core.db import translate_db_errors
from backend.durability import repository
from backend.durability.service import HybridConversationService
from backend.state.eviction import EvictionReport, SessionEvictor, WarmCheck
from backend.state.keys import is_valid_session_id


def warm_check(hybrid: HybridConversationService) -> WarmCheck:
    """Whether PostgreSQL's snapshot of a session is at least as new as Redis's state."""

    async def holds(session_id: str, conversation: int, orchestration: int) -> bool:
        with translate_db_errors():
            async with hybrid.engine.connect() as conn:
                stored = await repository.get_session(conn, session_id)
                orch = await repository.get_orchestration_state(conn, session_id)
        if stored is None or stored.inactive_at is not None or stored.version < conversation:
            return False
        return int((orch or {}).get("version") or 0) >= orchestration

    return holds


async def _clear(settings: Settings, session_id: str | None, min_idle: float) -> EvictionReport:
    async with open_hybrid(settings) as hybrid:
        evictor = SessionEvictor(hybrid.manager, min_idle=min_idle, warm_holds=warm_check(hybrid))
        if session_id is None:
            return await evictor.evict_all()
        reason = await evictor.evict(session_id)
        if reason is None:
            return EvictionReport(evicted=[session_id])
        return EvictionReport(kept=[(session_id, reason)])


@app.command("clear-cache")
def clear_cache(
    session_id: Annotated[
        str | None, typer.Argument(help="The session to evict (or --all).", show_default=False)
    ] = None,
    all_sessions: Annotated[
        bool, typer.Option("--all", help="Every snapshotted session under KEY_PREFIX.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    min_idle: Annotated[
        float, typer.Option(help="Leave sessions written in the last N seconds.", min=0)
    ] = 60.0,
) -> None:
    """Evict sessions from Redis that PostgreSQL already holds; never unsnapshotted state.

    Sessions still in the dirty set, older in PostgreSQL than in Redis, with a reply being
    generated, or written in the last --min-idle seconds are kept and listed. An evicted
    session is restored from PostgreSQL on its next read.
    """
    if (session_id is None) == (not all_sessions):
        raise fail("give one SESSION_ID or --all", EXIT_CONFIG)
    settings = load_settings()
    if session_id is not None and not is_valid_session_id(session_id):
        raise fail(f"invalid session id {session_id!r}", EXIT_CONFIG)
    if all_sessions and not yes:
        typer.confirm(
            f"Evict every snapshotted session under prefix {settings.key_prefix!r} "
            f"from {settings.redis_url}?",
            abort=True,
        )
    report = run(_clear(settings, session_id, min_idle))
    for sid in report.evicted:
        console.print(f"evicted {sid}", highlight=False)
    for sid, reason in report.kept:
        console.print(f"kept {sid}: {reason}", highlight=False)
    console.print(f"{len(report.evicted)} evicted, {len(report.kept)} kept", highlight=False)
    if session_id is not None and report.kept:
        raise typer.Exit(1)
