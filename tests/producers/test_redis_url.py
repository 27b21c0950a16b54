"""`SMS_REDIS_URL`'s two forms, plain and Sentinel, and what each user of Redis builds from it."""

from __future__ import annotations

import pytest
import redis
import redis.sentinel
from kombu.transport import redis as kombu_redis

from producers.redis_url import async_client, parse_sentinel_url, redacted, sync_client
from worker import redis_client
from worker.app import create_app
from worker.settings import Settings

URL = "sentinel://:s3cret@10.0.0.1:26379;sentinel://10.0.0.2:26380;sentinel://10.0.0.3/2?master_name=mymaster"


def test_a_sentinel_url_names_every_sentinel_the_master_and_the_database() -> None:
    """Each `sentinel://host:port` part is a sentinel (port 26379 by default); the database,
    the master's password and the query may sit on any part."""
    parsed = parse_sentinel_url(URL)
    assert parsed.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379))
    assert (parsed.master_name, parsed.db, parsed.password) == ("mymaster", 2, "s3cret")
    assert "s3cret" not in repr(parsed)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sentinel://10.0.0.1:26379", "master_name"),
        ("sentinel://10.0.0.1:26379/x?master_name=m", "database"),
        ("sentinel://10.0.0.1:26379;redis://10.0.0.2/0?master_name=m", "sentinel://host:port"),
    ],
)
def test_malformed_sentinel_urls_are_refused_with_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_sentinel_url(url)


def test_the_broker_gets_kombus_form_and_the_master_name_as_a_transport_option() -> None:
    """Celery is given `sentinel://…;sentinel://…/db` (kombu's Sentinel transport) and
    `master_name`; a plain URL passes through unchanged."""
    url, options = redis_client.broker(Settings(redis_url=URL + "&sentinel_password=sp"))
    assert url == (
        "sentinel://:s3cret@10.0.0.1:26379/2;sentinel://:s3cret@10.0.0.2:26380/2;sentinel://:s3cret@10.0.0.3:26379/2"
    )
    assert options == {"master_name": "mymaster", "sentinel_kwargs": {"password": "sp"}}
    assert redis_client.broker(Settings(redis_url="redis://r:6379/0")) == ("redis://r:6379/0", {})


def test_the_celery_app_uses_the_sentinel_transport() -> None:
    """The worker's app: kombu's `sentinel` transport, `master_name` among the transport options,
    and channel errors (READONLY from a demoted master) retried."""
    app = create_app(Settings(redis_url=URL))
    # kombu's Sentinel transport, hardened by this project (worker/transport.py)
    assert app.connection_for_read().transport_cls == "worker.transport:SentinelTransport"
    assert issubclass(app.connection_for_read().get_transport_cls(), kombu_redis.SentinelTransport)
    assert app.conf.broker_transport_options["master_name"] == "mymaster"
    assert app.conf.broker_transport_options["visibility_timeout"] == 300
    assert app.conf.broker_channel_error_retry is True


def test_clients_from_a_sentinel_url_ask_the_sentinels_for_the_master() -> None:
    """The sync and asyncio clients (workers, CLI, HTTP service, producers) are redis-py Sentinel
    master clients; connecting to nothing stays lazy until the first command."""
    sync = sync_client(URL, socket_timeout=1.0)
    assert isinstance(sync.connection_pool, redis.sentinel.SentinelConnectionPool)
    assert sync.connection_pool.service_name == "mymaster"
    assert sync.connection_pool.connection_kwargs["db"] == 2
    assert sync.connection_pool.connection_kwargs["password"] == "s3cret"
    plain = sync_client("redis://127.0.0.1:6379/0")
    assert not isinstance(plain.connection_pool, redis.sentinel.SentinelConnectionPool)
    aio = async_client(URL, max_connections=10)
    assert type(aio.connection_pool).__name__ == "SentinelConnectionPool"


def test_urls_in_messages_carry_no_password() -> None:
    shown = redacted(URL + "&sentinel_password=sp")
    assert "s3cret" not in shown and "sp" not in shown.split("?")[-1]
    assert shown.startswith("sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26380;")
    assert redacted("redis://:pw@r:6379/0") == "redis://r:6379/0"
