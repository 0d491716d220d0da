from tests.cli.helpers import ops_settings  # noqa: F401
