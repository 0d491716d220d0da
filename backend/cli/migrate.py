"""`triage migrate`: the one-off move of the legacy in-memory state into Redis.

`scripts/migrate_to_redis.py` runs this same command; the engine is backend/state/migration.py.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from backend.cli import app
from backend.cli.common import (
    EXIT_CONFIG,
    console,
    err_console,
    fail,
    load_settings,
    open_manager,
    reflow,
    run,
)
from backend.state import migration
from backend.state.migration import LegacyDump, MigrationOutcome


def migrate(
    dump: Annotated[
        Path, typer.Argument(help="The legacy state dump (JSON), or - for standard input.")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Write nothing; report what would be migrated.")
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Then read every record back from Redis and compare it with the dump "
            "(with --dry-run: check an earlier migration).",
        ),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON on stdout.")
    ] = False,
    show_progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr.")
    ] = True,
) -> None:
    """Move the legacy in-memory state into Redis (idempotent; never overwrites newer state).

    The dump is one JSON object with the two dicts the legacy services kept in memory,
    keyed by session id: {"active_conversations": {...}, "active_orchestrations": {...}}.
    A conversation has user_id (required), tenant_id, created_at, last_activity, status,
    conversation_history (a list of {role, content, timestamp}), collected_info and an
    optional version; an orchestration has user_id, tenant_id, current_step, status,
    triage_result, created_at, updated_at and an optional version. Timestamps are ISO 8601
    (UTC when no offset is given) or epoch seconds. Unknown fields are kept, not dropped.
    README.md ("Migrating from the legacy in-memory state") has the full description and
    tests/fixtures/legacy_state.json a sample.

    Each record is written at its legacy version (1 when absent) only when Redis holds no
    or an older state, so running it again changes nothing, and migrated sessions are
    marked for snapshotting to PostgreSQL. A malformed record is named with the reason and
    skipped; the others are still migrated.

    Exit status: 0 all good; 1 some records invalid or failing --verify; 2 the dump or the
    configuration is unusable (nothing written); 3 Redis unreachable.
    """
    try:
        legacy = migration.load_dump(dump)
    except migration.DumpError as exc:
        raise fail(str(exc), EXIT_CONFIG) from None
    settings = load_settings()
    outcome = run(_migrate(legacy, settings, dry_run, verify, show_progress))
    if json_output:
        console.print_json(json.dumps(outcome.as_dict(), ensure_ascii=False))
    else:
        _print_summary(outcome)
    raise typer.Exit(outcome.exit_code)


migrate.__doc__ = reflow(migrate.__doc__)
app.command()(migrate)


async def _migrate(
    legacy: LegacyDump, settings: object, dry_run: bool, verify: bool, show_progress: bool
) -> MigrationOutcome:
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not show_progress,
        transient=False,
    )
    async with open_manager(settings) as manager:  # type: ignore[arg-type]
        with bar if show_progress else nullcontext():
            task = bar.add_task("dry run" if dry_run else "migrating", total=legacy.total)
            outcome = await migration.migrate(
                manager, legacy, dry_run=dry_run, on_record=lambda *_: bar.advance(task)
            )
            if verify:
                check = bar.add_task("verifying", total=legacy.total - len(outcome.invalid))
                await migration.verify(
                    manager, legacy, outcome, on_record=lambda *_: bar.advance(check)
                )
    return outcome


def _print_summary(outcome: MigrationOutcome) -> None:
    def out(text: str, markup: bool = True) -> None:
        # One physical line per record, so the summary can be grepped whatever the width.
        console.print(text, highlight=False, markup=markup, soft_wrap=True)

    title = (
        "Migration summary (dry run: nothing written)" if outcome.dry_run else "Migration summary"
    )
    out(f"[bold]{title}[/]")
    out(
        f"  records in dump: {outcome.conversations} conversations, "
        f"{outcome.orchestrations} orchestrations"
    )
    verb = "would migrate" if outcome.dry_run else "migrated"
    out(f"  {verb}: {outcome.migrated}")
    out(f"  skipped (Redis already holds the same or a newer version): {outcome.skipped}")
    out(f"  invalid: {len(outcome.invalid)}")
    for name, reason in outcome.invalid:
        out(f"    {name}: {reason}", markup=False)
    if outcome.verified is not None:
        out(
            f"  verified: {outcome.verified} match ({outcome.newer_in_redis} moved on to a newer "
            f"version), {len(outcome.mismatches)} mismatches"
        )
        for name, reason in outcome.mismatches:
            out(f"    {name}: {reason}", markup=False)
