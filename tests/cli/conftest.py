from tests.cli.helpers import background, broker_settings, ops_settings  # noqa: F401
