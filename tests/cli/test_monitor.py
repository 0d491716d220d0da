"""`triage monitor --once`: one frame of the live view, on a private Redis."""

from __future__ import annotations

from backend.core.config import Settings
from tests.cli.helpers import invoke, new_session
from tests.redis_cluster import free_port
from workers.config import FLUSH_DIRTY, create_celery_app


def rows(output: str) -> dict[str, str]:
    cells = [line.strip("│ ").split("│") for line in output.splitlines() if line.startswith("│")]
    return {c[0].strip(): c[-1].strip() for c in cells if c[0].strip()}


def test_one_frame_shows_sessions_memory_queue_and_lag(broker_settings: Settings) -> None:
    for _ in range(2):
        new_session(broker_settings)
    celery = create_celery_app(broker_settings)
    for _ in range(3):  # no worker is running: they wait in the queue
        celery.send_task(FLUSH_DIRTY)

    result = invoke(broker_settings, "monitor", "--once")
    assert result.exit_code == 0, result.output
    frame = rows(result.stdout)
    assert frame["conversations"] == "2"
    assert frame["dirty sessions (not yet snapshotted)"] == "2"
    assert float(frame["snapshot lag"].removesuffix(" s")) >= 0
    assert frame[f"queue depth ({broker_settings.celery_queue})"] == "3"
    assert frame["workers answering"] == "0"
    assert frame["policy"] and frame["used"]


def test_unreachable_redis(broker_settings: Settings) -> None:
    result = invoke(
        broker_settings,
        "monitor",
        "--once",
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        REDIS_RETRIES="0",
    )
    assert result.exit_code == 3 and "Redis unavailable" in result.stderr
