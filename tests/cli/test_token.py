"""`triage token`."""

from __future__ import annotations

from backend.core.auth import Principal, decode_token
from backend.core.config import Settings
from tests.cli.helpers import invoke


def test_prints_a_token_the_api_accepts(ops_settings: Settings) -> None:
    result = invoke(ops_settings, "token", "--user", "joao.silva@example.com", "--tenant", "t-1")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert decode_token(ops_settings, token) == Principal("joao.silva@example.com", "t-1")


def test_refuses_bad_ids_and_production(ops_settings: Settings) -> None:
    bad = invoke(ops_settings, "token", "--user", "{admin}", "--tenant", "t-1")
    assert bad.exit_code == 2 and "user and tenant ids" in bad.stderr
    prod = invoke(ops_settings, "token", "--user", "ana", "--tenant", "t", ENVIRONMENT="production")
    assert prod.exit_code == 2 and "production" in prod.stderr
    assert prod.stdout == ""


def test_refuses_a_placeholder_secret(ops_settings: Settings) -> None:
    result = invoke(ops_settings, "token", "--user", "ana", "--tenant", "t", JWT_SECRET="secret")
    assert result.exit_code == 2
    assert "JWT_SECRET" in result.stderr and result.stdout == ""


def test_role_ops_mints_an_operator_token(ops_settings: Settings) -> None:
    result = invoke(ops_settings, "token", "-u", "ops.ana", "-t", "t-1", "--role", "ops")
    assert result.exit_code == 0, result.output
    principal = decode_token(ops_settings, result.stdout.strip())
    assert principal == Principal("ops.ana", "t-1", role="ops") and principal.is_ops
