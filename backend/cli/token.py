"""`triage token`: a bearer token for development, tests and the terminal chat client."""

from __future__ import annotations

from typing import Annotated

import typer

from backend.cli import app
from backend.cli.common import EXIT_CONFIG, fail, load_settings
from backend.core.auth import create_token


@app.command()
def token(
    user: Annotated[str, typer.Option("--user", "-u", help="User id (the token's sub).")],
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="Tenant id.")],
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.", min=1)] = 86_400,
    role: Annotated[
        str | None, typer.Option(help='Role claim: "ops" opens the operations page (/ops).')
    ] = None,
) -> None:
    """Print a bearer JWT for USER in TENANT, signed with JWT_SECRET (not in production)."""
    settings = load_settings()
    if settings.environment == "production":
        # Production tokens come from the identity provider; minting one here would let
        # anyone with shell access act as any user.
        raise fail("refusing to mint tokens with ENVIRONMENT=production", EXIT_CONFIG)
    try:
        jwt = create_token(settings, user, tenant, ttl_seconds=ttl, role=role)
    except ValueError as exc:
        raise fail(str(exc), EXIT_CONFIG) from None
    typer.echo(jwt)
