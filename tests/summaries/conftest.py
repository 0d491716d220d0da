from tests.durability.conftest import engine, hybrid, settings

__all__ = ["engine", "hybrid", "settings"]
