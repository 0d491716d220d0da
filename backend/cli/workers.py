"""`triage worker` and `triage beat`: Celery with the project's app (workers.app:celery_app).

Thin wrappers: the options operators need most, and anything after them goes to celery as is
(`triage worker -- --autoscale=8,2`). The app is imported only here, after the settings are
checked, because importing it reads the settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from backend.cli import app
from backend.cli.common import load_settings

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def _celery(argv: list[str]) -> None:
    settings = load_settings()
    if settings.log_format == "json":
        # Celery prints its start-up banner straight to stdout: not a JSON line.
        argv = ["--quiet", *argv]
    from celery.bin.celery import celery as celery_command

    from workers.app import celery_app

    # Not `celery_app.start(argv)`: it drops the exit status of the worker (a worker that
    # gave up on its broker would exit 0, and a supervisor would not restart it).
    celery_command.params[0].default = celery_app
    try:
        status = celery_command.main(args=argv, standalone_mode=False)
    finally:
        celery_command.params[0].default = None
    raise typer.Exit(status if isinstance(status, int) else 0)


@app.command(context_settings=_PASS_THROUGH)
def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int | None, typer.Option(help="Worker processes (default: one per CPU).", min=1)
    ] = None,
    pool: Annotated[str, typer.Option(help="Celery pool: prefork, solo, threads.")] = "prefork",
    loglevel: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING...")] = "INFO",
    hostname: Annotated[
        str | None, typer.Option("--hostname", "-n", help="Node name (default celery@host).")
    ] = None,
) -> None:
    """Run a Celery worker for the durability tasks (snapshots, restores, archive, cleanup)."""
    argv = ["worker", f"--pool={pool}", f"--loglevel={loglevel}"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    if hostname:
        argv.append(f"--hostname={hostname}")
    _celery([*argv, *ctx.args])


@app.command(context_settings=_PASS_THROUGH)
def beat(
    ctx: typer.Context,
    schedule: Annotated[
        Path, typer.Option(help="Where beat keeps its schedule state (must be writable).")
    ] = Path("celerybeat-schedule"),
    loglevel: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING...")] = "INFO",
) -> None:
    """Run Celery beat: the periodic flush, archive, cleanup and summaries (run one or more)."""
    _celery(["beat", f"--schedule={schedule}", f"--loglevel={loglevel}", *ctx.args])
