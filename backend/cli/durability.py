"""`triage flush`, `archive`, `purge`, `repair-text`: the durability layer, run by hand.

The same service methods the Celery tasks and the API call (backend/durability/service.py),
on a service with its own clients (backend/cli/hybrid.py); these commands need PostgreSQL
(DATABASE_URL) as well as Redis.
"""

from __future__ import annotations

from typing import Annotated

import typer

from backend.cli import app
from backend.cli.common import EXIT_CONFIG, console, fail, load_settings, run
from backend.cli.hybrid import (
    archive_inactive_sessions,
    flush_dirty_sessions,
    open_hybrid,
    purge_session,
)
from backend.core.config import Settings
from backend.durability.repair import RepairReport, repair_text
from backend.durability.schemas import PurgeReport
from backend.state.keys import is_valid_session_id


@app.command()
def flush() -> None:
    """Snapshot every dirty session to PostgreSQL now (what beat does every few seconds).

    Sessions PostgreSQL refuses are retried too, whatever their backoff; exit 1 when some
    still are (they stay dirty: `triage stats` lists them with the reason).
    """
    report = run(flush_dirty_sessions(load_settings()))
    console.print(
        f"{report.sessions} dirty sessions: {report.sessions_written} written "
        f"({report.messages_written} messages), {report.released} released, "
        f"{report.requeued} written again meanwhile (still dirty), "
        f"{report.refused} refused by PostgreSQL (still dirty, see `triage stats`)",
        highlight=False,
    )
    if report.refused:
        raise typer.Exit(1)


@app.command()
def archive(
    max_batches: Annotated[
        int, typer.Option(help="Stop after this many batches (ARCHIVE_BATCH_SIZE each).", min=1)
    ] = 1_000,
) -> None:
    """Move sessions inactive for ARCHIVE_INACTIVE_SESSIONS_DAYS to the cold archive now."""
    settings = load_settings()
    moved = run(archive_inactive_sessions(settings, max_batches=max_batches))
    console.print(
        f"archived {moved} sessions inactive for more than "
        f"{settings.archive_inactive_sessions_days:g} days to the {settings.archive_backend}"
        " archive backend",
        highlight=False,
    )


async def _owner(settings: Settings, session_id: str) -> str | None:
    async with open_hybrid(settings) as hybrid:
        owner = await hybrid.owner(session_id)
    return None if owner is None else f"user {owner.user_id} (tenant {owner.tenant_id})"


@app.command()
def purge(
    session_id: Annotated[str, typer.Argument(help="The session to erase.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a session from every tier: Redis, PostgreSQL and the archive (LGPD erasure).

    PostgreSQL keeps only a tombstone (the id, for PURGE_TOMBSTONE_DAYS) so that a snapshot
    already in flight cannot bring the session back. Exit status 1 when nothing was found.
    """
    if not is_valid_session_id(session_id):
        raise fail(f"invalid session id {session_id!r}", EXIT_CONFIG)
    settings = load_settings()
    if not yes:
        owner = run(_owner(settings, session_id)) or "an unknown owner"
        typer.confirm(
            f"Erase session {session_id} of {owner} from Redis, PostgreSQL and the archive? "
            "This cannot be undone.",
            abort=True,
        )
    report: PurgeReport = run(purge_session(settings, session_id))
    tiers = [name for name in ("hot", "warm", "cold") if getattr(report, name)]
    if not tiers:
        console.print(f"session {session_id} was not found in any tier", highlight=False)
        raise typer.Exit(1)
    console.print(f"purged {session_id} from: {', '.join(tiers)}", highlight=False)


async def _repair(settings: Settings, session_id: str) -> RepairReport:
    async with open_hybrid(settings) as hybrid:
        return await repair_text(hybrid, session_id)


@app.command("repair-text")
def repair_text_command(
    session_id: Annotated[str, typer.Argument(help="The session to repair.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Replace text PostgreSQL cannot store (NUL, lone surrogates) with U+FFFD, then snapshot.

    For sessions written before text was checked at the boundary, whose snapshots are refused
    (`triage stats` lists them). Prints where characters were replaced, never the text. Exit
    status 1 when the session was not found or its snapshot is still refused.
    """
    if not is_valid_session_id(session_id):
        raise fail(f"invalid session id {session_id!r}", EXIT_CONFIG)
    if not yes:
        typer.confirm(
            f"Replace every NUL and lone surrogate in session {session_id} with U+FFFD?",
            abort=True,
        )
    report = run(_repair(load_settings(), session_id))
    if not report.found:
        console.print(f"session {session_id} is not in Redis", highlight=False)
        raise typer.Exit(1)
    where = ", ".join(report.repaired) or "nothing to repair"
    console.print(f"{session_id}: {where}", highlight=False, markup=False)
    flush = report.flush
    if flush is not None and flush.refused:
        console.print("its snapshot is still refused (see `triage stats`)", highlight=False)
        raise typer.Exit(1)
    console.print("snapshot written: PostgreSQL holds its latest version", highlight=False)
