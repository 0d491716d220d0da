"""The `triage` command line. Each module below registers its commands on `app`."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Triagem inteligente: service and ops commands.")
from backend.cli import cache  # noqa: E402,F401
from backend.cli import migrate  # noqa: E402,F401
from backend.cli import server  # noqa: E402,F401
from backend.cli import stats  # noqa: E402,F401
from backend.cli import token  # noqa: E402,F401
from backend.cli import durability  # noqa: E402,F401
from backend.cli import monitor  # noqa: E402,F401
from backend.cli import workers  # noqa: E402,F401
from backend.cli import chat  # noqa: E402,F401
