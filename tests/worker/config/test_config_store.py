"""The Redis config store and the worker's cached source: encryption at rest, atomic whole-config
writes, merge patches, key rotation, and live changes at no Redis cost per send."""

from __future__ import annotations

import threading
import typing
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from pydantic import BaseModel, SecretStr
from structlog.testing import capture_logs

from producers.contract import CallContext, ErrorCode
from producers.jobs import build_job
from tests.redis_dump import dump_all
from worker.config import sealed
from worker.config.crypto import Crypto
from worker.config.models import Agent, Connection, SmsConfig
from worker.config.patch import merge_patch
from worker.config.source import FileConfigSource, RedisConfigSource, open_source
from worker.config.store import AGENTS_KEY, CHANGES_KEY, CONNECTIONS_KEY, VERSION_KEY, RedisConfigStore
from worker.errors import ConfigError, SendError
from worker.plan import make_plan
from worker.settings import Settings

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "tok-sekret-4f9a1c7d"
PLIVO_TOKEN = "plivo-sekret-88a1b2"
TELNYX_KEY = "KEYtelnyx-sekret-0a9c"
HEADER = "Bearer gw-sekret-77e3"
AGENT_HEADER = "agent-sekret-5d2e"
SECRETS = (SID, TOKEN, PLIVO_TOKEN, TELNYX_KEY, HEADER, AGENT_HEADER)


def twilio(label: str = "Twilio - Support", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "label": label,
        "provider": "twilio",
        "from_number": "+14155550000",
        "credentials": {"account_sid": SID, "auth_token": TOKEN},
    }
    data.update(overrides)
    return data


def sms_body(**sms: Any) -> dict[str, Any]:
    return {"voice_tools": {"sms_mid_call": {"enabled": True, **sms}}}


@pytest.fixture
def key() -> str:
    return Crypto.generate_key()


@pytest.fixture
def store(redis_client: redis.Redis, key: str) -> RedisConfigStore:
    return RedisConfigStore(redis_client, Crypto([key]))


def fill(store: RedisConfigStore) -> None:
    """One connection of each provider with secrets, and an agent with a secret header."""
    store.add_connection(twilio(default=True))
    store.add_connection(twilio("Twilio - Sales", from_number="+14155550001"))
    store.add_connection(
        {"label": "Plivo", "provider": "plivo", "credentials": {"auth_id": "MA1", "auth_token": PLIVO_TOKEN}}
    )
    store.add_connection({"label": "Telnyx", "provider": "telnyx", "credentials": {"api_key": TELNYX_KEY}})
    store.add_connection(
        {
            "label": "Gateway",
            "provider": "custom",
            "custom_api_url": "https://gw.acme.example/sms",
            "custom_api_headers": {"Authorization": HEADER},
        }
    )
    store.add_connection({"label": "Sandbox", "provider": "sandbox", "default": True})
    store.set_agent(
        "agent_abc123",
        sms_body(
            connection="Twilio - Support",
            templates={"code": "Your code is {code}"},
            custom_api_headers={"X-Key": AGENT_HEADER},
        ),
    )


def assert_no_secret(blob: bytes | str) -> None:
    data = blob if isinstance(blob, bytes) else blob.encode()
    for secret in SECRETS:
        assert secret.encode() not in data, f"a secret ending {secret[-4:]} is stored in clear"


# -- secrets at rest ------------------------------------------------------------------------------


def test_no_secret_is_stored_in_clear_in_any_redis_key(
    store: RedisConfigStore, redis_client: redis.Redis
) -> None:
    """After adding connections of every provider and an agent with a header, no key or value in the
    whole database holds a secret in clear — yet the store reads every secret back."""
    fill(store)
    blob = dump_all(redis_client)
    assert b"sms:config:connections" in blob
    assert b"enc:" in blob
    assert_no_secret(blob)
    config = store.load()
    support = config.connection("Twilio - Support")
    assert support is not None and support.secret("auth_token") == TOKEN
    gateway = config.connection("Gateway")
    assert gateway is not None and gateway.custom_api_headers["Authorization"].get_secret_value() == HEADER
    headers = config.agents["agent_abc123"].sms.custom_api_headers
    assert headers["X-Key"].get_secret_value() == AGENT_HEADER


def _secret_fields(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Paths of the model's fields typed `dict[str, SecretStr]` (nested models followed)."""
    found = set()
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if typing.get_origin(annotation) is dict and typing.get_args(annotation)[1] is SecretStr:
            found.add((*prefix, name))
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found |= _secret_fields(annotation, (*prefix, name))
        elif annotation is SecretStr:  # a bare secret field would need its own entry in the tables
            found.add((*prefix, name, "<bare>"))
    return found


def test_the_secret_tables_cover_every_secret_field_of_the_models() -> None:
    """Every SecretStr mapping of Connection and Agent is in the tables that say what to encrypt."""
    assert _secret_fields(Connection) == set(sealed.CONNECTION_SECRETS)
    assert _secret_fields(Agent) == set(sealed.AGENT_SECRETS)


def test_writing_secrets_without_an_encryption_key_is_refused(redis_client: redis.Redis) -> None:
    """Without SMS_ENCRYPTION_KEYS a connection with credentials is refused, and nothing is written."""
    store = RedisConfigStore(redis_client, Crypto([]))
    with pytest.raises(ConfigError, match="SMS_ENCRYPTION_KEYS is not set") as info:
        store.add_connection(twilio())
    assert_no_secret(str(info.value))
    assert dump_all(redis_client, match="sms:*") == b""  # kombu's keys of earlier tests aside


def test_a_wrong_key_is_refused_naming_the_field(store: RedisConfigStore, redis_client: redis.Redis) -> None:
    """With a key that did not encrypt the store, reads and writes fail naming the field; nothing changes."""
    fill(store)
    before = dump_all(redis_client)
    stranger = RedisConfigStore(redis_client, Crypto([Crypto.generate_key()]))
    with pytest.raises(ConfigError, match="cannot decrypt: wrong encryption key") as info:
        stranger.load()
    assert "connection 'Gateway': custom_api_headers.Authorization" in str(info.value)
    with pytest.raises(ConfigError, match="cannot decrypt") as write:
        stranger.set_agent("agent_new", sms_body(provider="sandbox"))
    assert_no_secret(str(info.value) + str(write.value))
    assert dump_all(redis_client) == before


# -- refusals: whole, naming the field, nothing written ---------------------------------------------

CONNECTION_REFUSALS = [
    pytest.param(twilio(provider="twilo"), "connection 'Twilio - Support': provider", id="unknown-provider"),
    pytest.param(
        twilio(credentials={"account_sid": SID}), "credentials: missing auth_token", id="missing-credential"
    ),
    pytest.param(twilio(from_number="4155550000"), "from_number: not an E.164", id="from-not-e164"),
    pytest.param(
        twilio(credentials={"account_sid": SID, "auth_token": TOKEN, "pin": TOKEN}),
        "unknown field(s) pin",
        id="unknown-credential",
    ),
    pytest.param(
        {"label": "Sandbox 2", "provider": "sandbox", "default": True},
        "more than one default",
        id="two-defaults",
    ),
    pytest.param(twilio("Sandbox"), "connection 'Sandbox': already exists", id="duplicate-label"),
]


@pytest.mark.parametrize(("data", "message"), CONNECTION_REFUSALS)
def test_a_bad_connection_is_refused_whole_and_nothing_is_written(
    store: RedisConfigStore, redis_client: redis.Redis, data: dict[str, Any], message: str
) -> None:
    """A bad connection is refused with a message naming the field, never a secret; Redis is unchanged."""
    store.add_connection({"label": "Sandbox", "provider": "sandbox", "default": True})
    before = dump_all(redis_client)
    with pytest.raises(ConfigError) as info:
        store.add_connection(data)
    assert message in str(info.value)
    assert_no_secret(str(info.value))
    assert dump_all(redis_client) == before


AGENT_REFUSALS = [
    pytest.param(sms_body(provider="twillio"), "voice_tools.sms_mid_call.provider", id="unknown-provider"),
    pytest.param(sms_body(from_number="+1 555"), "voice_tools.sms_mid_call.from_number", id="from-not-e164"),
    pytest.param(sms_body(templates={"r": "Total {amount:.2f}"}), "template 'r'", id="template-format-spec"),
    pytest.param(sms_body(templates={"r": "Hi {0.__class__}"}), "template 'r'", id="template-attribute"),
    pytest.param(
        sms_body(connection="Twilio - Nowhere"), "unknown connection 'Twilio - Nowhere'", id="unknown-label"
    ),
    pytest.param(sms_body(max_per_call="many"), "max_per_call", id="bad-cap"),
    pytest.param({"voice_tools": "sms please"}, "voice_tools", id="voice-tools-not-an-object"),
]


@pytest.mark.parametrize(("body", "message"), AGENT_REFUSALS)
def test_a_bad_agent_is_refused_whole_and_nothing_is_written(
    store: RedisConfigStore, redis_client: redis.Redis, body: dict[str, Any], message: str
) -> None:
    """A bad agent body (new, or as a patch of a good agent) is refused naming the agent and the
    field; Redis is unchanged."""
    fill(store)
    before = dump_all(redis_client)
    for agent_id in ("agent_new", "agent_abc123"):
        with pytest.raises(ConfigError) as info:
            store.set_agent(agent_id, body)
        assert f"agent {agent_id!r}" in str(info.value)
        assert message in str(info.value)
        assert_no_secret(str(info.value))
    assert dump_all(redis_client) == before


def test_a_connection_in_use_cannot_be_removed(store: RedisConfigStore, redis_client: redis.Redis) -> None:
    """Removing a connection an agent sends through is refused naming the agent; an unused one goes."""
    fill(store)
    before = dump_all(redis_client)
    with pytest.raises(ConfigError, match="used by agent\\(s\\) 'agent_abc123'"):
        store.remove_connection("Twilio - Support")
    with pytest.raises(ConfigError, match="no such connection"):
        store.remove_connection("Nope")
    assert dump_all(redis_client) == before
    store.remove_connection("Telnyx")
    assert store.load().connection("Telnyx") is None
    assert b"Telnyx" not in redis_client.hkeys(CONNECTIONS_KEY)


# -- agents: merge patches ----------------------------------------------------------------------------


def test_agent_set_merges_a_partial_body_like_a_patch(store: RedisConfigStore) -> None:
    """A partial body changes only what it names; null removes a template; platform fields are dropped."""
    store.add_connection({"label": "Sandbox", "provider": "sandbox"})
    store.set_agent(
        "agent_1",
        {
            "agent_name": "Front desk",
            "general_prompt": "Greet ${customer_name}.",
            "voice_tools": {
                "transfer_call": {"enabled": True},
                "sms_mid_call": {
                    "enabled": True,
                    "connection": "Sandbox",
                    "templates": {"a": "A {x}", "b": "B"},
                    "allowed_countries": ["us", "ca"],
                },
            },
        },
    )
    agent = store.set_agent(
        "agent_1",
        {"voice_tools": {"sms_mid_call": {"templates": {"b": None, "c": "C"}, "allowed_countries": ["gb"]}}},
    )
    sms = agent.sms
    assert sms.enabled is True
    assert sms.connection == "Sandbox"
    assert sms.templates == {"a": "A {x}", "c": "C"}
    assert sms.allowed_countries == ["GB"]  # an array replaces, it does not merge
    stored = sealed.plain(store.load().agents["agent_1"])
    assert stored == {
        "voice_tools": {
            "sms_mid_call": {
                "enabled": True,
                "connection": "Sandbox",
                "templates": {"a": "A {x}", "c": "C"},
                "allowed_countries": ["GB"],
            }
        }
    }


def test_agent_set_with_replace_stores_the_body_as_given(store: RedisConfigStore) -> None:
    """With replace, fields the new body leaves out go back to their defaults."""
    store.set_agent("agent_1", sms_body(provider="sandbox", templates={"a": "A"}, max_per_call=2))
    agent = store.set_agent("agent_1", sms_body(provider="sandbox"), replace=True)
    assert agent.sms.templates == {}
    assert agent.sms.max_per_call == 5


def test_a_patch_may_change_a_secret_header_and_keep_the_others(
    store: RedisConfigStore, redis_client: redis.Redis
) -> None:
    """A patch that sets one header keeps the other, stored secret header (merged in clear, in memory)."""
    store.set_agent("agent_1", sms_body(provider="sandbox", custom_api_headers={"X-Key": AGENT_HEADER}))
    agent = store.set_agent(
        "agent_1", {"voice_tools": {"sms_mid_call": {"custom_api_headers": {"X-Other": HEADER}}}}
    )
    headers = {k: v.get_secret_value() for k, v in agent.sms.custom_api_headers.items()}
    assert headers == {"X-Key": AGENT_HEADER, "X-Other": HEADER}
    assert_no_secret(dump_all(redis_client))


def test_an_unchanged_write_writes_nothing(store: RedisConfigStore, redis_client: redis.Redis) -> None:
    """Setting an agent to what it already is leaves the version and the ciphertext alone, so no
    worker reloads anything."""
    fill(store)
    version = redis_client.get(VERSION_KEY)
    stored = redis_client.hget(AGENTS_KEY, "agent_abc123")
    store.set_agent("agent_abc123", sms_body(connection="Twilio - Support"))
    store.add_connection(twilio(default=True), replace=True)
    assert redis_client.get(VERSION_KEY) == version
    assert redis_client.hget(AGENTS_KEY, "agent_abc123") == stored


RFC_7396_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC_7396_EXAMPLES)
def test_merge_patch_follows_the_examples_of_rfc_7396(target: Any, patch: Any, result: Any) -> None:
    """merge_patch gives the results of RFC 7396's appendix A, and changes neither argument."""
    target_copy = repr(target)
    assert merge_patch(target, patch) == result
    assert repr(target) == target_copy


# -- the whole config: import, export, concurrency ------------------------------------------------


def test_export_holds_only_tokens_and_imports_back_to_the_same_config(
    store: RedisConfigStore, redis_client: redis.Redis, key: str
) -> None:
    """Export holds every secret as an enc: token; imported into an empty store it gives an equal config."""
    fill(store)
    original = store.load()
    document = store.export()
    assert_no_secret(repr(document))
    assert document["connections"][0]["label"] == "Gateway"  # sorted by label
    for key_name in redis_client.scan_iter("sms:config:*"):
        redis_client.delete(key_name)
    from worker.config.loader import validate

    store.import_config(validate(document, crypto=Crypto([key]), env={}))
    assert store.load() == original


def test_import_replaces_the_whole_config_or_merges_into_it(store: RedisConfigStore) -> None:
    """A plain import removes what the new config lacks; a merge import keeps it."""
    fill(store)
    incoming = SmsConfig.model_validate(
        {"connections": [{"label": "Sandbox 2", "provider": "sandbox"}], "agents": {"agent_x": sms_body()}}
    )
    merged = store.import_config(incoming, merge=True)
    assert {c.label for c in merged.connections} >= {"Twilio - Support", "Sandbox 2"}
    assert set(merged.agents) == {"agent_abc123", "agent_x"}
    replaced = store.import_config(incoming)
    assert [c.label for c in replaced.connections] == ["Sandbox 2"]
    assert list(replaced.agents) == ["agent_x"]
    assert store.load() == replaced


def test_concurrent_writes_are_all_kept(
    store: RedisConfigStore, redis_client: redis.Redis, redis_url: str, key: str
) -> None:
    """Twenty writers adding agents at once each see their write land: a lost race starts over."""
    store.add_connection({"label": "Sandbox", "provider": "sandbox"})
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            with redis.Redis.from_url(redis_url) as client:
                RedisConfigStore(client, Crypto([key])).set_agent(
                    f"agent_{i}", sms_body(connection="Sandbox")
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.load().agents) == 20
    assert int(redis_client.get(VERSION_KEY) or 0) == 21
    assert redis_client.zcard(CHANGES_KEY) == 21


# -- key rotation -----------------------------------------------------------------------------------


def test_after_rotation_the_new_key_alone_opens_everything(redis_client: redis.Redis, key: str) -> None:
    """rotate-keys re-encrypts every secret so that the old key can be dropped; a second run has
    nothing left to do; secrets stay out of Redis throughout."""
    fill(RedisConfigStore(redis_client, Crypto([key])))
    original = RedisConfigStore(redis_client, Crypto([key])).load()
    new = Crypto.generate_key()
    both = RedisConfigStore(redis_client, Crypto([new, key]))
    every_secret = sum(len(c.credentials) + len(c.custom_api_headers) for c in original.connections) + 1
    assert every_secret == 9  # Twilio ×2 (2 each), Plivo 2, Telnyx 1, Gateway 1, the agent's header 1
    assert both.rotate_keys() == every_secret
    assert both.rotate_keys() == 0
    only_new = RedisConfigStore(redis_client, Crypto([new]))
    assert only_new.load() == original
    with pytest.raises(ConfigError, match="cannot decrypt"):
        RedisConfigStore(redis_client, Crypto([key])).load()
    assert_no_secret(dump_all(redis_client))


def test_rotation_is_refused_whole_when_a_secret_cannot_be_opened(
    redis_client: redis.Redis, key: str
) -> None:
    """Rotating with keys that cannot open a stored secret changes nothing and names the field."""
    fill(RedisConfigStore(redis_client, Crypto([key])))
    before = dump_all(redis_client)
    with pytest.raises(ConfigError, match="cannot decrypt"):
        RedisConfigStore(redis_client, Crypto([Crypto.generate_key()])).rotate_keys()
    assert dump_all(redis_client) == before


# -- the worker's source ----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingRedis(redis.Redis):
    """A client that counts the commands it sends (each one a round trip here: no pipelines)."""

    commands: list[str]

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(str(args[0]))
        return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


@pytest.fixture
def counting(redis_url: str) -> Iterator[CountingRedis]:
    client = CountingRedis(connection_pool=redis.ConnectionPool.from_url(redis_url))
    client.commands = []
    yield client
    client.close()


def test_a_send_costs_no_redis_round_trip_for_config(
    store: RedisConfigStore, counting: CountingRedis, key: str
) -> None:
    """10,000 config reads between two refreshes make no Redis call; each refresh is one script
    call, whether or not something changed (the changes come with it)."""
    fill(store)
    clock = Clock()
    source = RedisConfigSource(RedisConfigStore(counting, Crypto([key])), refresh=2.0, clock=clock)
    at_start = len(counting.commands)
    for _ in range(10_000):
        assert source.get().agents["agent_abc123"].sms.enabled
    between = len(counting.commands) - at_start
    clock.now += 2.0
    source.get()
    unchanged = len(counting.commands) - at_start - between
    store.set_agent("agent_abc123", sms_body(enabled=False))
    clock.now += 2.0
    assert source.get().agents["agent_abc123"].sms.enabled is False
    changed = len(counting.commands) - at_start - between - unchanged
    print(
        f"\nconfig round trips: start {at_start}, 10,000 gets {between}, "
        f"refresh {unchanged}, refresh after a change {changed}"
    )
    assert at_start <= 3  # EVALSHA (+ SCRIPT LOAD and EVALSHA again the first time on this server)
    assert between == 0
    assert unchanged == 1
    assert changed == 1


def test_the_source_follows_changes_and_removals_without_reloading_the_rest(
    store: RedisConfigStore, redis_client: redis.Redis, key: str
) -> None:
    """After a write, the next refresh applies only the changed items; the others stay the same objects."""
    fill(store)
    clock = Clock()
    source = RedisConfigSource(RedisConfigStore(redis_client, Crypto([key])), refresh=2.0, clock=clock)
    first = source.get()
    store.set_agent("agent_2", sms_body(connection="Sandbox", templates={"t": "v2 {x}"}))
    store.remove_connection("Telnyx")
    assert source.get() is first  # not due yet
    clock.now += 2.0
    second = source.get()
    assert second.agents["agent_2"].sms.templates == {"t": "v2 {x}"}
    assert second.connection("Telnyx") is None
    assert second.agents["agent_abc123"] is first.agents["agent_abc123"]
    assert second.connection("Twilio - Support") is first.connection("Twilio - Support")
    assert source.version == int(redis_client.get(VERSION_KEY) or 0)


def test_the_source_keeps_its_last_good_config_when_a_change_cannot_be_opened(
    store: RedisConfigStore, redis_client: redis.Redis, key: str
) -> None:
    """A change encrypted with a key this worker lacks is logged once, without a secret, and the
    worker keeps sending with the config it has."""
    fill(store)
    clock = Clock()
    source = RedisConfigSource(RedisConfigStore(redis_client, Crypto([key])), refresh=2.0, clock=clock)
    newer = RedisConfigStore(redis_client, Crypto([Crypto.generate_key(), key]))
    newer.rotate_keys()
    with capture_logs() as logs:
        clock.now += 2.0
        config = source.get()
        clock.now += 2.0
        source.get()
    support = config.connection("Twilio - Support")
    assert support is not None and support.secret("auth_token") == TOKEN
    failures = [entry for entry in logs if entry["event"] == "config.reload_failed"]
    assert len(failures) == 1
    assert "cannot decrypt" in failures[0]["error"]
    assert_no_secret(repr(logs))


def test_the_source_reloads_everything_when_the_store_was_rebuilt(
    store: RedisConfigStore, redis_client: redis.Redis, key: str
) -> None:
    """An emptied and refilled store (its version went back) is read whole: nothing stale survives."""
    fill(store)
    clock = Clock()
    source = RedisConfigSource(RedisConfigStore(redis_client, Crypto([key])), refresh=2.0, clock=clock)
    for name in (VERSION_KEY, CHANGES_KEY, CONNECTIONS_KEY, AGENTS_KEY):
        redis_client.delete(name)
    store.add_connection({"label": "Sandbox", "provider": "sandbox"})
    clock.now += 2.0
    config = source.get()
    assert [c.label for c in config.connections] == ["Sandbox"]
    assert config.agents == {}


def test_the_setting_chooses_the_source(redis_client: redis.Redis) -> None:
    """SMS_CONFIG_SOURCE=redis gives the Redis source; the default is the file source."""
    assert Settings().config_source == "file"
    assert isinstance(open_source(Settings(config_refresh=1), redis_client), FileConfigSource)
    source = open_source(Settings(config_source="redis"), redis_client)
    assert isinstance(source, RedisConfigSource)
    assert source.get() == SmsConfig()


# -- labelled connections and overrides, from the store ---------------------------------------------


def test_an_agent_picks_its_connection_by_label_and_a_job_overrides_only_when_allowed(
    store: RedisConfigStore,
) -> None:
    """Two Twilio connections: the agent's label decides; a job's connection or from_ is refused
    unless the agent sets allow_overrides."""
    fill(store)
    call = CallContext(
        call_id="CA1", direction="inbound", from_number="+14155551234", to_number="+14155550000"
    )

    def job(**overrides: Any) -> Any:
        return build_job(
            agent_id="agent_abc123", call=call, template="code", variables={"code": "1"}, **overrides
        )

    config = store.load()
    assert make_plan(config, job()).connection.label == "Twilio - Support"
    for override in ({"connection": "Twilio - Sales"}, {"from_": "+14155550001"}):
        with pytest.raises(SendError) as info:
            make_plan(config, job(**override))
        assert info.value.code == ErrorCode.SENDER_INVALID
    store.set_agent("agent_abc123", sms_body(allow_overrides=True))
    config = store.load()
    plan = make_plan(config, job(connection="Twilio - Sales", from_="+14155550001"))
    assert (plan.connection.label, plan.from_) == ("Twilio - Sales", "+14155550001")
