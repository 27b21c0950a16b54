"""Config: YAML/JSON loading, `${VAR}` and `enc:` values, refusals that name the field, no leaked secrets."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.config.crypto import Crypto
from worker.config.loader import load_file, parse_text, validate
from worker.config.models import Connection, SmsConfig
from worker.errors import ConfigError

SECRET = "sekret-XYZ-123"

CONFIG_YAML = """
connections:
  - label: "Twilio - Support"
    provider: twilio
    default: true
    from_number: "+14155550000"
    credentials:
      account_sid: "AC0123456789abcdef0123456789abcdef"
      auth_token: "${TWILIO_AUTH_TOKEN}"
    api_base_url: "https://api.twilio.com"
  - label: "Sandbox"
    provider: sandbox
agents:
  agent_abc123:
    voice_tools:
      sms_mid_call:
        enabled: true
        provider: twilio
        from_number: "+14155550000"
        templates:
          booking_confirmation: "Your appointment is confirmed for {date} at {time}. Details: {link}"
          password_reset: "Reset your password: {link}"
        allowed_countries: [us, ca]
        max_per_call: 3
"""


def twilio(**overrides: Any) -> dict[str, Any]:
    connection: dict[str, Any] = {
        "label": "Twilio - Support",
        "provider": "twilio",
        "from_number": "+14155550000",
        "credentials": {"account_sid": "AC0123456789abcdef0123456789abcdef", "auth_token": SECRET},
    }
    connection.update(overrides)
    return connection


def agent(**sms: Any) -> dict[str, Any]:
    return {"voice_tools": {"sms_mid_call": {"enabled": True, "provider": "twilio", **sms}}}


def load(
    data: Any, *, env: Mapping[str, str] | None = None, keys: Sequence[str] = (), source: str = "config"
) -> SmsConfig:
    return validate(data, crypto=Crypto(keys), env=env or {}, source=source)


def refusal(data: Any, **kwargs: Any) -> str:
    """The ConfigError message for `data`, which must be refused."""
    with pytest.raises(ConfigError) as info:
        load(data, **kwargs)
    return str(info.value)


# -- loading --------------------------------------------------------------------------------------


def test_yaml_and_the_same_json_load_to_the_same_config(tmp_path: Path) -> None:
    """A YAML file and its JSON translation load to equal SmsConfig objects."""
    env = {"TWILIO_AUTH_TOKEN": SECRET}
    yaml_file = tmp_path / "sms.yaml"
    yaml_file.write_text(CONFIG_YAML)
    json_file = tmp_path / "sms.json"
    json_file.write_text(json.dumps(yaml.safe_load(CONFIG_YAML), indent=2))

    from_yaml = load_file(yaml_file, crypto=Crypto([]), env=env)
    from_json = load_file(json_file, crypto=Crypto([]), env=env)

    assert from_yaml == from_json
    twilio_connection = from_yaml.connection("Twilio - Support")
    assert twilio_connection is not None
    assert twilio_connection.secret("auth_token") == SECRET
    sms = from_yaml.agents["agent_abc123"].sms
    assert sms.enabled
    assert sms.templates["password_reset"] == "Reset your password: {link}"
    assert sms.allowed_countries == ["US", "CA"]
    assert sms.max_per_call == 3


def test_an_empty_document_is_an_empty_config() -> None:
    """An empty file means no connections and no agents."""
    assert load(parse_text("", source="empty.yaml")) == SmsConfig()


def test_lookup_by_label_and_default_connection_per_provider() -> None:
    """Connections are found by label; a provider's default is the one marked default, or its only one."""
    config = load(
        {
            "connections": [
                twilio(label="A"),
                twilio(label="B", default=True),
                {"label": "S", "provider": "sandbox"},
            ]
        }
    )
    assert config.connection("A") is not None
    assert config.connection("nope") is None
    default_twilio = config.default_connection("twilio")
    assert default_twilio is not None and default_twilio.label == "B"
    only_sandbox = config.default_connection("sandbox")
    assert only_sandbox is not None and only_sandbox.label == "S"
    assert config.default_connection("plivo") is None


def test_two_connections_without_a_default_have_no_default() -> None:
    """With two connections of a provider and neither marked default, there is no default."""
    config = load({"connections": [twilio(label="A"), twilio(label="B")]})
    assert config.default_connection("twilio") is None


def test_from_numbers_are_normalized() -> None:
    """A from_number written with punctuation is stored in E.164."""
    config = load({"connections": [twilio(from_number="+1 (415) 555-0000")]})
    assert config.connections[0].from_number == "+14155550000"


def test_the_platform_agent_json_body_is_accepted_as_is() -> None:
    """An agent body from the platform, with fields we do not read besides sms_mid_call, loads."""
    body = {
        "agent_id": "agent_abc123",
        "agent_name": "Acme front desk",
        "voice_id": "11labs-Adrian",
        "language": "en-US",
        "response_engine": {"type": "retell-llm", "llm_id": "llm_1"},
        "webhook_url": "https://acme.example/hook",
        "voice_tools": {
            "transfer_call": {"enabled": True, "number": "+14155550100"},
            "sms_mid_call": {
                "enabled": True,
                "provider": "custom",
                "from_number": "+14155550000",
                "custom_api_url": "https://gateway.acme.example/sms",
                "custom_api_headers": {"Authorization": f"Bearer {SECRET}"},
                "templates": {"payment_link": "Pay here: {link}"},
                "description": "Send texts during the call",
                "last_modified": 1731024000,
            },
        },
    }
    config = load({"agents": {"agent_abc123": body}})
    sms = config.agents["agent_abc123"].sms
    assert sms.enabled
    assert sms.provider == "custom"
    assert sms.custom_api_url == "https://gateway.acme.example/sms"
    assert sms.custom_api_headers["Authorization"].get_secret_value() == f"Bearer {SECRET}"
    assert sms.templates == {"payment_link": "Pay here: {link}"}


def test_an_agent_without_sms_mid_call_is_disabled() -> None:
    """An agent body without voice_tools.sms_mid_call loads with SMS disabled."""
    config = load({"agents": {"agent_x": {"agent_name": "No texts"}}})
    assert config.agents["agent_x"].sms.enabled is False


def test_placeholders_in_platform_fields_we_do_not_read_do_not_break_loading() -> None:
    """An agent body whose unread fields hold ${...} text (its prompt, say) still loads."""
    body = agent()
    body["general_prompt"] = "Greet ${customer_name} by name."
    body["begin_message"] = "enc: is how we write encrypted notes"
    config = load({"agents": {"agent_abc123": body}, "connections": [twilio()]})
    assert config.agents["agent_abc123"].sms.enabled


# -- ${VAR} ---------------------------------------------------------------------------------------


def test_variables_are_read_from_the_given_environment() -> None:
    """`${VAR}` is replaced by the value from the env mapping given, also inside longer strings."""
    config = load(
        {
            "connections": [
                twilio(credentials={"account_sid": "${SID}", "auth_token": "${TOKEN}"}),
                {
                    "label": "Gateway",
                    "provider": "custom",
                    "custom_api_url": "https://${HOST}/sms",
                    "custom_api_headers": {"Authorization": "Bearer ${TOKEN}"},
                },
            ]
        },
        env={"SID": "AC42", "TOKEN": SECRET, "HOST": "gw.acme.example"},
    )
    first, gateway = config.connections
    assert first.secret("account_sid") == "AC42"
    assert first.secret("auth_token") == SECRET
    assert gateway.custom_api_url == "https://gw.acme.example/sms"
    assert gateway.custom_api_headers["Authorization"].get_secret_value() == f"Bearer {SECRET}"


def test_the_process_environment_is_not_read_when_an_env_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """With an explicit env mapping, a variable only in os.environ counts as missing."""
    monkeypatch.setenv("ONLY_IN_OS", SECRET)
    message = refusal(
        {"connections": [twilio(credentials={"account_sid": "AC1", "auth_token": "${ONLY_IN_OS}"})]}
    )
    assert "ONLY_IN_OS" in message


def test_a_missing_variable_names_the_field_path_and_the_variable() -> None:
    """A `${VAR}` that is not set is refused with the field's path and the variable's name."""
    message = refusal(
        {"connections": [twilio(credentials={"account_sid": "AC1", "auth_token": "${TWILIO_AUTH_TOKEN}"})]}
    )
    assert "credentials.auth_token" in message
    assert "TWILIO_AUTH_TOKEN" in message
    assert "not set" in message


def test_a_missing_variable_in_an_agent_names_the_agent() -> None:
    """A missing `${VAR}` inside an agent names the agent id and the field."""
    message = refusal({"agents": {"agent_abc123": agent(custom_api_headers={"X-Key": "${GATEWAY_KEY}"})}})
    assert "agent_abc123" in message
    assert "custom_api_headers.X-Key" in message
    assert "GATEWAY_KEY" in message


def test_a_missing_variable_in_a_connection_names_the_connection_by_label() -> None:
    """A missing `${VAR}` in a connection names the connection by its label, not its index."""
    message = refusal(
        {
            "connections": [
                {"label": "Sandbox", "provider": "sandbox"},
                twilio(credentials={"account_sid": "AC1", "auth_token": "${TWILIO_AUTH_TOKEN}"}),
            ]
        }
    )
    assert "Twilio - Support" in message
    assert "connections[1]" not in message


# -- enc: -----------------------------------------------------------------------------------------


def test_encrypted_values_decrypt_with_any_of_several_keys() -> None:
    """`enc:` values made with an older key still decrypt when a newer key is listed first."""
    old, new = Crypto.generate_key(), Crypto.generate_key()
    by_old = Crypto([old]).encrypt(SECRET)
    by_new = Crypto([new]).encrypt("AC-new")
    assert by_old.startswith("enc:")
    assert SECRET not in by_old

    config = load(
        {"connections": [twilio(credentials={"account_sid": by_new, "auth_token": by_old})]}, keys=[new, old]
    )

    assert config.connections[0].secret("auth_token") == SECRET
    assert config.connections[0].secret("account_sid") == "AC-new"


def test_encryption_uses_the_newest_key_and_rotation_moves_values_to_it() -> None:
    """encrypt() uses the first key; rotate() re-encrypts an old value so the newest key alone reads it."""
    old, new = Crypto.generate_key(), Crypto.generate_key()
    both = Crypto([new, old])
    assert Crypto([new]).decrypt(both.encrypt(SECRET), where="x") == SECRET
    rotated = both.rotate(Crypto([old]).encrypt(SECRET), where="x")
    assert Crypto([new]).decrypt(rotated, where="x") == SECRET


def test_a_value_encrypted_with_an_unknown_key_names_the_field_and_leaks_nothing() -> None:
    """An `enc:` value no key opens is refused naming the field, never its ciphertext or plaintext."""
    token = Crypto([Crypto.generate_key()]).encrypt(SECRET)
    message = refusal(
        {"connections": [twilio(credentials={"account_sid": "AC1", "auth_token": token})]},
        keys=[Crypto.generate_key(), Crypto.generate_key()],
    )
    assert "credentials.auth_token" in message
    assert "cannot decrypt" in message
    assert SECRET not in message
    assert token not in message
    assert token[4:24] not in message


def test_a_damaged_encrypted_value_is_refused() -> None:
    """A truncated `enc:` value is refused naming the field, without echoing it."""
    key = Crypto.generate_key()
    token = Crypto([key]).encrypt(SECRET)[:-10]
    message = refusal(
        {"connections": [twilio(credentials={"account_sid": "AC1", "auth_token": token})]}, keys=[key]
    )
    assert "credentials.auth_token" in message
    assert token[4:] not in message


def test_an_encrypted_value_without_keys_is_refused_naming_the_field() -> None:
    """An `enc:` value when SMS_ENCRYPTION_KEYS is not set is refused, naming the field."""
    token = Crypto([Crypto.generate_key()]).encrypt(SECRET)
    message = refusal({"connections": [twilio(credentials={"account_sid": "AC1", "auth_token": token})]})
    assert "credentials.auth_token" in message
    assert "SMS_ENCRYPTION_KEYS is not set" in message
    assert token[4:] not in message


def test_an_invalid_encryption_key_is_refused_without_echoing_it() -> None:
    """A malformed Fernet key is refused with a ConfigError that does not show the key."""
    with pytest.raises(ConfigError, match="SMS_ENCRYPTION_KEYS") as info:
        Crypto([Crypto.generate_key(), SECRET])
    assert SECRET not in str(info.value)


# -- refusals that name the connection or agent and the field --------------------------------------

CONNECTION_REFUSALS = [
    pytest.param(twilio(provider="twilo"), "provider", id="unknown-provider"),
    pytest.param(twilio(credentials={"account_sid": "AC1"}), "missing auth_token", id="missing-credential"),
    pytest.param(
        twilio(credentials={"auth_token": SECRET}), "missing account_sid", id="missing-other-credential"
    ),
    pytest.param(
        twilio(credentials={"account_sid": "AC1", "auth_token": ""}),
        "missing auth_token",
        id="empty-credential",
    ),
    pytest.param(
        twilio(credentials={"account_sid": "AC1", "auth_token": SECRET, "api_secret": SECRET}),
        "unknown field(s) api_secret",
        id="unknown-credential",
    ),
    pytest.param(
        {"label": "Plivo - Sales", "provider": "plivo", "credentials": {"auth_id": "MA1"}},
        "missing auth_token",
        id="plivo-missing-credential",
    ),
    pytest.param(twilio(from_number="4155550000"), "from_number", id="from-not-e164"),
    pytest.param(twilio(from_number="+1415555"), "from_number", id="from-invalid"),
    pytest.param(
        twilio(credentials={"account_sid": "AC1", "auth_token": 12345}),
        "credentials.auth_token",
        id="non-text-credential",
    ),
    pytest.param(twilio(credentials=SECRET), "credentials", id="credentials-not-a-mapping"),
    pytest.param(twilio(region="us1"), "region", id="unknown-connection-field"),
    pytest.param(
        {"label": "Gateway", "provider": "custom", "custom_api_headers": {"Authorization": SECRET}},
        "custom_api_url",
        id="custom-without-url",
    ),
]


@pytest.mark.parametrize(("connection", "field"), CONNECTION_REFUSALS)
def test_bad_connections_are_refused_naming_the_label_and_the_field(
    connection: dict[str, Any], field: str
) -> None:
    """A bad connection is refused with its label (not its index) and the offending field."""
    message = refusal({"connections": [{"label": "Sandbox", "provider": "sandbox"}, connection]})
    assert f"connection {connection['label']!r}" in message
    assert field in message
    assert "connections[1]" not in message
    assert SECRET not in message


AGENT_REFUSALS = [
    pytest.param(agent(provider="twillio"), "voice_tools.sms_mid_call.provider", id="unknown-provider"),
    pytest.param(agent(from_number="+1 555"), "voice_tools.sms_mid_call.from_number", id="from-not-e164"),
    pytest.param(
        agent(templates={"receipt": "Total {amount:.2f}"}), "template 'receipt'", id="template-format-spec"
    ),
    pytest.param(
        agent(templates={"receipt": "Hi {0.__class__}"}), "template 'receipt'", id="template-attribute"
    ),
    pytest.param(agent(templates={"receipt": "Hi {name"}), "template 'receipt'", id="template-unbalanced"),
    pytest.param(
        agent(connection="Twilio - Nowhere"), "unknown connection 'Twilio - Nowhere'", id="unknown-connection"
    ),
    pytest.param(
        agent(fallback_connection="Backup"), "sms_mid_call.fallback_connection", id="unknown-fallback"
    ),
    pytest.param(agent(recipient_policy="everyone"), "recipient_policy", id="unknown-policy"),
    pytest.param(agent(allowed_countries=["USA"]), "allowed_countries", id="bad-country"),
    pytest.param(agent(allowed_countries=["US", "XK", "EU"]), "EU", id="country-not-a-region"),
    pytest.param(agent(max_per_recipient={"count": 3}), "max_per_recipient.window_seconds", id="cap-window"),
    pytest.param(agent(max_per_call=-1), "max_per_call", id="negative-cap"),
    pytest.param(
        agent(max_per_recipient={"count": -1, "window_seconds": 60}), "count", id="negative-rcpt-cap"
    ),
    pytest.param(
        agent(custom_api_headers={"Authorization": 5}), "custom_api_headers.Authorization", id="bad-header"
    ),
]


@pytest.mark.parametrize(("body", "field"), AGENT_REFUSALS)
def test_bad_agents_are_refused_naming_the_agent_and_the_field(body: dict[str, Any], field: str) -> None:
    """A bad agent is refused with its id and the offending field."""
    message = refusal({"connections": [twilio()], "agents": {"agent_ok": agent(), "agent_abc123": body}})
    assert "agent 'agent_abc123'" in message
    assert "agent_ok" not in message
    assert field in message


def test_duplicate_labels_are_refused_naming_the_label() -> None:
    """Two connections with the same label are refused, naming the label."""
    message = refusal({"connections": [twilio(), twilio(from_number="+14155550001")]})
    assert "duplicate label" in message
    assert "'Twilio - Support'" in message


def test_two_defaults_for_one_provider_are_refused_naming_both() -> None:
    """Two default connections for one provider are refused, naming the provider and both labels."""
    message = refusal({"connections": [twilio(label="A", default=True), twilio(label="B", default=True)]})
    assert "more than one default for provider twilio" in message
    assert "'A'" in message and "'B'" in message


def test_defaults_of_different_providers_are_fine() -> None:
    """One default per provider is allowed."""
    config = load(
        {"connections": [twilio(default=True), {"label": "S", "provider": "sandbox", "default": True}]}
    )
    assert len(config.connections) == 2


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("connections:\n  - label: A\n    provider: [sandbox\nagents: {}\n", "line 4"),
        ("connections:\n  - label: A\n\tprovider: sandbox\n", "line 3"),
        ('{\n  "connections": [],\n  "agents": {,}\n}\n', "line 3"),
    ],
    ids=["yaml-unclosed", "yaml-tab", "json"],
)
def test_malformed_yaml_or_json_gives_the_line(tmp_path: Path, text: str, line: str) -> None:
    """A file that is neither valid YAML nor JSON is refused with its path and the line of the error."""
    path = tmp_path / "sms.conf"
    path.write_text(text)
    with pytest.raises(ConfigError, match="not valid YAML or JSON") as info:
        load_file(path, crypto=Crypto([]), env={})
    assert str(path) in str(info.value)
    assert line in str(info.value)


def test_malformed_yaml_does_not_echo_its_content() -> None:
    """The parse error does not quote the document, which may hold a secret."""
    with pytest.raises(ConfigError) as info:
        parse_text(f"connections:\n  - auth_token: [{SECRET}\n", source="sms.yaml")
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "document", ["- a\n- b\n", "just a string\n", "42\n", "[1, 2]"], ids=["list", "str", "int", "json-list"]
)
def test_a_top_level_that_is_not_a_mapping_is_refused(document: str) -> None:
    """A document whose top level is not a mapping is refused, saying what the top level must be."""
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load(parse_text(document, source="sms.yaml"), source="sms.yaml")


def test_unknown_top_level_keys_are_refused() -> None:
    """A misspelt top-level key (agent instead of agents) is refused, naming it."""
    assert "agent" in refusal({"agent": {}})


def test_an_unreadable_file_is_refused_naming_it(tmp_path: Path) -> None:
    """A config path that cannot be read is a ConfigError naming the path."""
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="cannot read the config file") as info:
        load_file(missing, crypto=Crypto([]))
    assert str(missing) in str(info.value)


# -- secrets never shown --------------------------------------------------------------------------

SECRET_BEARING_BAD_CONFIGS = [
    pytest.param({"connections": [twilio(provider="nope")]}, id="bad-provider"),
    pytest.param({"connections": [twilio(from_number=SECRET)]}, id="secret-as-from"),
    pytest.param({"connections": [twilio(credentials={"auth_token": SECRET})]}, id="missing-sid"),
    pytest.param(
        {"connections": [twilio(credentials={"account_sid": SECRET, "auth_token": [SECRET]})]},
        id="list-token",
    ),
    pytest.param(
        {"connections": [twilio(credentials={"account_sid": "AC", "auth_token": {"v": SECRET}})]},
        id="dict-token",
    ),
    pytest.param(
        {"connections": [twilio(credentials={"account_sid": "AC", "auth_token": "x", "key": SECRET})]},
        id="extra-cred",
    ),
    pytest.param({"connections": [twilio(default=SECRET)]}, id="secret-as-default"),
    pytest.param({"connections": [twilio(label=[SECRET])]}, id="secret-as-label"),
    pytest.param({"connections": [twilio(), twilio()]}, id="duplicate"),
    pytest.param({"connections": [twilio(token=SECRET)]}, id="unknown-field"),
    pytest.param(
        {"connections": [{"label": "C", "provider": "custom", "custom_api_headers": {"K": SECRET}}]},
        id="custom-no-url",
    ),
    pytest.param(
        {
            "connections": [
                {
                    "label": "C",
                    "provider": "custom",
                    "custom_api_url": "https://x",
                    "custom_api_headers": {"K": [SECRET]},
                }
            ]
        },
        id="custom-bad-header",
    ),
    pytest.param(
        {"agents": {"a": agent(custom_api_headers={"K": SECRET}, provider=SECRET)}}, id="agent-bad-provider"
    ),
    pytest.param(
        {"agents": {"a": agent(custom_api_headers={"K": SECRET}, max_per_call=SECRET)}}, id="agent-bad-cap"
    ),
    pytest.param({"agents": {"a": agent(from_number=SECRET)}}, id="agent-secret-as-from"),
    pytest.param(
        {
            "connections": [twilio()],
            "agents": {"a": agent(connection="Nope", custom_api_headers={"K": SECRET})},
        },
        id="agent-unknown-connection",
    ),
]


@pytest.mark.parametrize("data", SECRET_BEARING_BAD_CONFIGS)
def test_no_config_error_ever_shows_a_secret_value(data: dict[str, Any]) -> None:
    """Whatever is wrong with a config holding a secret, the ConfigError message never contains it."""
    assert SECRET not in refusal(data)


def test_no_config_error_shows_a_secret_read_from_the_environment() -> None:
    """A secret interpolated from the environment into a field that fails validation is not echoed."""
    message = refusal(
        {
            "connections": [
                twilio(
                    from_number="${TOKEN}", credentials={"account_sid": "${TOKEN}", "auth_token": "${TOKEN}"}
                )
            ]
        },
        env={"TOKEN": SECRET},
    )
    assert "from_number" in message
    assert SECRET not in message


def test_repr_and_str_of_a_loaded_connection_hide_its_secrets() -> None:
    """repr() and str() of loaded connections, agents and the whole config never show a secret."""
    config = load(
        {
            "connections": [
                twilio(credentials={"account_sid": "AC1", "auth_token": "${TOKEN}"}),
                {
                    "label": "Gateway",
                    "provider": "custom",
                    "custom_api_url": "https://gw.acme.example/sms",
                    "custom_api_headers": {"Authorization": f"Bearer {SECRET}"},
                },
            ],
            "agents": {"a": agent(custom_api_headers={"X-Key": SECRET})},
        },
        env={"TOKEN": SECRET},
    )
    for obj in (*config.connections, config.agents["a"], config.agents["a"].sms, config):
        assert SECRET not in repr(obj)
        assert SECRET not in str(obj)
    connection = config.connections[0]
    assert isinstance(connection, Connection)
    assert connection.secret("auth_token") == SECRET
    assert "**" in repr(connection)


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Twilio - Support", "twilio-support"),
        ("  Plivo__EU  ", "plivo-eu"),
        ("Télnyx #2", "t-lnyx-2"),
        ("日本", "connection"),
    ],
)
def test_a_connection_id_is_derived_from_its_label(label: str, expected: str) -> None:
    """The webhook id is the label lowercased, each run of other characters one `-`."""
    connection = Connection(label=label, provider="sandbox")
    assert connection.connection_id == expected


def test_an_explicit_connection_id_wins_and_is_looked_up_per_provider() -> None:
    """`id` overrides the derived one; a webhook URL finds its connection by provider and id."""
    config = SmsConfig(
        connections=[
            Connection(label="Twilio - Support", provider="sandbox", id="support"),
            Connection(label="Other", provider="sandbox"),
        ]
    )
    found = config.connection_by_id("sandbox", "support")
    assert found is not None and found.label == "Twilio - Support"
    assert config.connection_by_id("twilio", "support") is None
    assert config.connection_by_id("sandbox", "twilio-support") is None


def test_two_connections_with_the_same_id_are_refused_naming_both() -> None:
    """Labels that differ only in punctuation would share a webhook URL: refused at load."""
    with pytest.raises(ValueError, match="share the webhook id 'twilio-support'") as info:
        SmsConfig(
            connections=[
                Connection(label="Twilio - Support", provider="sandbox"),
                Connection(label="twilio support", provider="sandbox"),
            ]
        )
    assert "'Twilio - Support'" in str(info.value) and "'twilio support'" in str(info.value)


def test_a_connection_id_must_be_url_safe() -> None:
    """An explicit id with characters a URL path would need escaped is refused."""
    with pytest.raises(ValueError, match="id"):
        Connection(label="x", provider="sandbox", id="Has Space/slash")
