#!/usr/bin/env python3
"""One-off migration of the legacy in-memory state into Redis.

    python scripts/migrate_to_redis.py legacy_state.json [--dry-run] [--verify] [--json]

The same command as `triage migrate` (see `--help` for the dump format, the options and the
exit statuses); the engine is backend/state/migration.py. Settings (REDIS_URL, KEY_PREFIX,
MAX_CONVERSATION_HISTORY, ...) come from the environment or `.env`, like the service's.
"""

from __future__ import annotations

import typer

from backend.cli.migrate import migrate


def main() -> None:
    typer.run(migrate)


if __name__ == "__main__":
    main()
