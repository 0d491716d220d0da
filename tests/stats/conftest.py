from tests.durability.conftest import settings

__all__ = ["settings"]
