"""workers/broker.py: the broker behind Redis Sentinel, as kombu and the beat lock reach it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from pydantic import SecretStr, ValidationError

from tests.conftest import make_settings
from tests.redis_sentinel import MASTER_NAME, SentinelGroup
from workers.broker import BrokerRedis, transport_options
from workers.config import create_celery_app
from workers.inspect import queue_depth

SENTINELS = "sentinel://:pw@10.0.0.1:26379/2;sentinel://10.0.0.2:26380;sentinel://10.0.0.3"


def test_a_sentinel_url_gives_kombu_the_master_name_and_the_sentinels_password() -> None:
    settings = make_settings(
        celery_broker_url=SENTINELS,
        celery_broker_sentinel_master="broker",
        celery_broker_sentinel_password="sentinel-pw",
    )
    options = create_celery_app(settings).conf.broker_transport_options

    assert options["master_name"] == "broker"
    assert options["sentinel_kwargs"]["password"] == "sentinel-pw"
    assert options["visibility_timeout"] == settings.celery_visibility_timeout
    # An empty password (as .env.example leaves it) is no password.
    no_password = make_settings(celery_broker_url=SENTINELS, celery_broker_sentinel_password="")
    assert "password" not in transport_options(no_password)["sentinel_kwargs"]
    # A plain Redis broker is left as it was.
    assert transport_options(make_settings()) == {
        "visibility_timeout": settings.celery_visibility_timeout
    }


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis://10.0.0.1:6379/0;redis://10.0.0.2:6379/0", "must all be sentinel://"),
        ("sentinel://10.0.0.1:26379;redis://10.0.0.2:6379/0", "must all be sentinel://"),
        ("sentinel://10.0.0.1:26379/0;sentinel://10.0.0.2:26379/3", "database"),
        ("sentinel://:a@10.0.0.1:26379;sentinel://:b@10.0.0.2:26379", "password"),
        ("sentinel://10.0.0.1:26379;sentinel://", "names no sentinel host"),
    ],
)
def test_a_broker_url_kombu_would_read_otherwise_is_refused_at_start(
    url: str, complaint: str
) -> None:
    # kombu reads the database and the password from the first URL only.
    with pytest.raises(ValidationError, match=complaint):
        make_settings(celery_broker_url=url)


@pytest.fixture(scope="module")
def locked_group() -> Iterator[SentinelGroup]:
    """Data nodes and sentinels that all ask for a password, as in docker-compose.yml."""
    group = SentinelGroup(password=secrets.token_urlsafe(16)).start()
    try:
        yield group
    finally:
        group.destroy()


def test_password_protected_sentinels_and_master_are_reached(locked_group: SentinelGroup) -> None:
    settings = make_settings(
        celery_broker_url=locked_group.url,
        celery_broker_sentinel_master=MASTER_NAME,
        celery_broker_sentinel_password=locked_group.password,
    )
    celery = create_celery_app(settings)
    broker = BrokerRedis(settings, timeout=2)
    try:
        assert queue_depth(celery, settings.celery_queue) == 0  # kombu, through the sentinels
        broker.client.set("probe", "1")  # the beat lock's client, on the master
        with locked_group.master().client() as master:
            assert master.get("probe") == b"1"
    finally:
        broker.close()
        celery.close()

    wrong = settings.model_copy(update={"celery_broker_sentinel_password": SecretStr("not-it")})
    celery = create_celery_app(wrong)
    try:
        assert queue_depth(celery, settings.celery_queue) is None  # unreadable, not a crash
    finally:
        celery.close()
