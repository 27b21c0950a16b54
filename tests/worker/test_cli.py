"""`midcall-sms config …` on the Redis store: masked output, one-line refusals that name the field and
write nothing, key rotation, connection checks, and the console script itself."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.redis_dump import dump_all
from worker.cli import main, safe_url
from worker.config.crypto import Crypto
from worker.config.models import Connection
from worker.providers.probe import probe
from worker.testing.twilio import FakeTwilio

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "tok-sekret-4f9a1c7d"
HEADER = "Bearer gw-sekret-77e3"
SECRETS = (SID, TOKEN, HEADER)
CONSOLE_SCRIPT = Path(sys.executable).parent / "midcall-sms"


@dataclass
class Run:
    code: int
    out: str
    err: str


CliRunner = Callable[..., Run]


@pytest.fixture
def key() -> str:
    return Crypto.generate_key()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_client: redis.Redis, key: str) -> None:
    """The CLI's settings; `redis_client` is there for its clean-up of `sms:*` after the test."""
    monkeypatch.setenv("SMS_REDIS_URL", redis_url)
    monkeypatch.setenv("SMS_ENCRYPTION_KEYS", key)
    monkeypatch.setenv("SMS_CONFIG_SOURCE", "redis")
    monkeypatch.setenv("TWILIO_TOKEN", TOKEN)


@pytest.fixture
def cli(env: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Runs `midcall-sms` in-process; every run is checked for tracebacks and secrets."""

    def run(*argv: str, stdin: str = "") -> Run:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(list(argv))
        captured = capsys.readouterr()
        result = Run(code, captured.out, captured.err)
        assert_clean(result.out + result.err)
        return result

    return run


def assert_clean(text: str) -> None:
    assert "Traceback" not in text
    for secret in SECRETS:
        assert secret not in text, f"a secret ending {secret[-4:]} was printed"


def refused(result: Run, *fields: str) -> str:
    """The one `error:` line of a refused command, which must name each of `fields`."""
    assert result.code == 2, result
    assert result.out == ""
    lines = [line for line in result.err.splitlines() if not line.startswith("note:")]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    for field in fields:
        assert field in lines[0]
    return lines[0]


def add_twilio(cli: CliRunner, label: str = "Twilio - Support", *extra: str, base: str | None = None) -> Run:
    """Adds a Twilio connection; the token comes from the environment, never the command line.
    Without `base` (a fake's URL) nothing may reach Twilio, so the from-number goes unchecked."""
    argv = ["config", "connection", "add", label, "--provider", "twilio", "--from-number", "+14155550000"]
    argv += ["--credential", f"account_sid={SID}", "--credential", "auth_token=${TWILIO_TOKEN}", *extra]
    argv += ["--no-verify"] if base is None else ["--api-base-url", base]
    result = cli(*argv)
    assert result.code == 0, result
    return result


def body(**sms: Any) -> str:
    return json.dumps({"agent_name": "Front desk", "voice_tools": {"sms_mid_call": {"enabled": True, **sms}}})


# -- connections ------------------------------------------------------------------------------------


def test_connection_add_list_and_show_never_print_a_secret(cli: CliRunner) -> None:
    """Secrets given through ${VAR} and standard input are stored; list and show print them masked."""
    add_twilio(cli, "Twilio - Support", "--default")
    added = cli(
        "config", "connection", "add", "Gateway", "--provider", "custom",
        "--custom-api-url", "https://gw.acme.example/sms", "--header", "Authorization=-",
        stdin=HEADER + "\n",
    )  # fmt: skip
    assert added.code == 0
    assert "1 secret(s) encrypted" in added.out

    listed = cli("config", "connection", "list")
    assert listed.code == 0
    rows = listed.out.splitlines()
    assert rows[0].split() == ["LABEL", "PROVIDER", "DEFAULT", "FROM", "CREDENTIALS"]
    support = next(row for row in rows if row.startswith("Twilio - Support"))
    assert "twilio" in support and "yes" in support and "+14155550000" in support
    assert f"auth_token=****{TOKEN[-4:]}" in support

    shown = cli("config", "connection", "show", "Gateway")
    assert shown.code == 0
    assert "label: Gateway" in shown.out
    assert "Authorization: '****77e3'" in shown.out


def test_a_secret_without_its_name_is_not_echoed(cli: CliRunner, redis_client: redis.Redis) -> None:
    """`--credential <secret>` (no NAME=) is refused without repeating the argument."""
    result = cli("config", "connection", "add", "T", "--provider", "twilio", "--credential", TOKEN)
    refused(result, "--credential: expected NAME=VALUE")
    assert dump_all(redis_client, match="sms:*") == b""  # kombu's keys of earlier tests aside


def test_connection_remove_refuses_a_connection_in_use(cli: CliRunner) -> None:
    """A connection an agent sends through cannot be removed; once the agent moves, it can."""
    add_twilio(cli)
    assert cli("config", "connection", "add", "Sandbox", "--provider", "sandbox").code == 0
    assert cli("config", "agent", "set", "agent_1", stdin=body(connection="Twilio - Support")).code == 0
    refused(cli("config", "connection", "remove", "Twilio - Support"), "'Twilio - Support'", "agent_1")
    assert cli("config", "agent", "set", "agent_1", stdin=body(connection="Sandbox")).code == 0
    removed = cli("config", "connection", "remove", "Twilio - Support")
    assert removed.code == 0
    assert "Twilio - Support" not in cli("config", "connection", "list").out


# -- agents ---------------------------------------------------------------------------------------


def test_agent_set_takes_the_platform_body_from_stdin_or_a_file_and_merges_it(
    cli: CliRunner, tmp_path: Path
) -> None:
    """`agent set` reads the agent JSON from standard input or a file; a second, partial body
    changes only what it names (merge patch)."""
    assert cli("config", "connection", "add", "Sandbox", "--provider", "sandbox").code == 0
    first_body = body(
        connection="Sandbox", templates={"a": "A {x}", "b": "B"}, custom_api_headers={"K": HEADER}
    )
    first = cli("config", "agent", "set", "agent_1", stdin=first_body)
    assert first.code == 0
    assert "agent 'agent_1' saved: enabled, sends through connection 'Sandbox', 2 template(s)" in first.out
    patch = tmp_path / "patch.json"
    patch.write_text(
        json.dumps({"voice_tools": {"sms_mid_call": {"enabled": False, "templates": {"b": None}}}})
    )
    second = cli("config", "agent", "set", "agent_1", str(patch))
    assert second.code == 0
    assert "disabled" in second.out and "1 template(s)" in second.out

    shown = json.loads(cli("config", "agent", "show", "agent_1").out)
    sms = shown["voice_tools"]["sms_mid_call"]
    assert sms["enabled"] is False
    assert sms["templates"] == {"a": "A {x}"}
    assert sms["custom_api_headers"] == {"K": "****77e3"}
    assert cli("config", "agent", "list").out == (
        "agent_1: disabled, sends through connection 'Sandbox', 1 template(s)\n"
    )
    assert cli("config", "agent", "remove", "agent_1").code == 0
    assert cli("config", "agent", "list").out == "no agents\n"


# -- refusals ---------------------------------------------------------------------------------------

REFUSALS = [
    pytest.param(
        ["config", "connection", "add", "T", "--provider", "twilo", "--credential", f"auth_token={TOKEN}"],
        "",
        ("connection 'T'", "provider"),
        id="unknown-provider",
    ),
    pytest.param(
        [
            "config",
            "connection",
            "add",
            "T",
            "--provider",
            "twilio",
            "--credential",
            "auth_token=${TWILIO_TOKEN}",
        ],
        "",
        ("connection 'T'", "credentials: missing account_sid"),
        id="missing-credential",
    ),
    pytest.param(
        [
            "config",
            "connection",
            "add",
            "T",
            "--provider",
            "twilio",
            "--from-number",
            "4155550000",
            "--credential",
            f"account_sid={SID}",
            "--credential",
            "auth_token=${TWILIO_TOKEN}",
        ],
        "",
        ("connection 'T'", "from_number", "E.164"),
        id="from-not-e164",
    ),
    pytest.param(
        ["config", "connection", "add", "T", "--provider", "twilio", "--credential", "auth_token=${NOPE}"],
        "",
        ("credentials.auth_token", "environment variable NOPE is not set"),
        id="missing-variable",
    ),
    pytest.param(
        ["config", "agent", "set", "agent_1"],
        body(provider="sandbox", templates={"r": "Hi {name.upper}"}),
        ("agent 'agent_1'", "voice_tools.sms_mid_call.templates", "template 'r'"),
        id="template-placeholder",
    ),
    pytest.param(
        ["config", "agent", "set", "agent_1"],
        body(connection="Twilio - Nowhere"),
        ("agent 'agent_1'", "sms_mid_call.connection", "unknown connection 'Twilio - Nowhere'"),
        id="unknown-connection",
    ),
    pytest.param(
        ["config", "agent", "set", "agent_1"],
        '{"voice_tools": {"sms_mid_call": {"enabled": true,}}}',
        ("agent 'agent_1'", "not valid JSON", "line 1 column 51"),
        id="malformed-json",
    ),
    pytest.param(
        ["config", "agent", "set", "agent_1"], "[1, 2]", ("must be a JSON object",), id="json-array"
    ),
    pytest.param(
        ["config", "agent", "set", "agent_1", "/nonexistent/a.json"], "", ("cannot read",), id="no-file"
    ),
    pytest.param(
        ["config", "connection", "show", "Nope"], "", ("connection 'Nope'", "no such"), id="unknown-label"
    ),
    pytest.param(
        ["config", "connection", "test", "Nope"], "", ("connection 'Nope'", "no such"), id="test-unknown"
    ),
    pytest.param(
        ["config", "agent", "remove", "agent_x"], "", ("agent 'agent_x'", "no such"), id="unknown-agent"
    ),
    pytest.param(
        ["config", "import", "-"], "connections: [\n", ("standard input", "not valid YAML"), id="bad-import"
    ),
]


@pytest.mark.parametrize(("argv", "stdin", "fields"), REFUSALS)
def test_bad_input_is_refused_in_one_line_naming_the_field_and_nothing_is_written(
    cli: CliRunner, redis_client: redis.Redis, argv: list[str], stdin: str, fields: tuple[str, ...]
) -> None:
    """Each bad input exits 2 with one `error:` line naming the field — no traceback, no secret —
    and the store is byte for byte what it was."""
    add_twilio(cli)
    assert cli("config", "agent", "set", "agent_1", stdin=body(connection="Twilio - Support")).code == 0
    before = dump_all(redis_client)
    refused(cli(*argv, stdin=stdin), *fields)
    assert dump_all(redis_client) == before


def test_a_wrong_key_is_a_clear_error_for_every_command_that_opens_secrets(
    cli: CliRunner, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a valid key that did not encrypt the store, reading and writing commands exit 2 naming
    the field; nothing is written."""
    add_twilio(cli)
    before = dump_all(redis_client)
    monkeypatch.setenv("SMS_ENCRYPTION_KEYS", Crypto.generate_key())
    for argv, stdin in [
        (["config", "connection", "list"], ""),
        (["config", "connection", "show", "Twilio - Support"], ""),
        (["config", "connection", "test", "Twilio - Support"], ""),
        (["config", "agent", "set", "agent_1"], body(provider="sandbox")),
        (["config", "rotate-keys"], ""),
    ]:
        refused(cli(*argv, stdin=stdin), "connection 'Twilio - Support': credentials.", "cannot decrypt")
    assert dump_all(redis_client) == before


@pytest.mark.parametrize(
    ("keys", "message"),
    [("", "SMS_ENCRYPTION_KEYS is not set"), ("not-a-key," + TOKEN, "not a valid Fernet key")],
    ids=["missing", "malformed"],
)
def test_a_missing_or_malformed_key_is_a_clear_error(
    cli: CliRunner, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, keys: str, message: str
) -> None:
    """Without a key, or with one that is not a Fernet key, adding a secret exits 2 saying so — never
    echoing the key — and nothing is written."""
    monkeypatch.setenv("SMS_ENCRYPTION_KEYS", keys)
    result = cli(
        "config", "connection", "add", "T", "--provider", "twilio",
        "--credential", f"account_sid={SID}", "--credential", "auth_token=${TWILIO_TOKEN}",
    )  # fmt: skip
    line = refused(result, message)
    assert "not-a-key" not in line
    assert dump_all(redis_client, match="sms:*") == b""  # kombu's keys of earlier tests aside


def test_an_unreachable_redis_is_one_line_without_the_password(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When Redis cannot be reached the error names the URL without its password."""
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    monkeypatch.setenv("SMS_REDIS_URL", f"redis://:hunter2-pw@127.0.0.1:{port}/0")
    line = refused(
        cli("config", "connection", "list"), f"Redis at redis://127.0.0.1:{port}/0", "ConnectionError"
    )
    assert "hunter2" not in line
    assert safe_url("redis://user:pw@host:6380/2") == "redis://host:6380/2"


def test_bad_settings_are_one_line_naming_the_variable(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An invalid SMS_* setting is reported by its variable name, exit 2."""
    monkeypatch.setenv("SMS_CONFIG_SOURCE", "etcd")
    refused(cli("config", "connection", "list"), "SMS_CONFIG_SOURCE")


# -- the whole config -------------------------------------------------------------------------------


def test_export_prints_tokens_only_and_import_restores_the_store(
    cli: CliRunner, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Export holds enc: tokens, never a secret; importing it into an emptied store restores the
    same config; a file with ${VAR} secrets imports with the secret encrypted."""
    add_twilio(cli, "Twilio - Support", "--default")
    assert cli("config", "agent", "set", "agent_1", stdin=body(custom_api_headers={"K": HEADER})).code == 0
    listed = cli("config", "connection", "list").out
    exported = cli("config", "export")
    assert exported.code == 0
    assert exported.out.count(": enc:") == 3  # the two credentials and the header
    backup = tmp_path / "backup.yaml"
    backup.write_text(exported.out)
    for name in redis_client.scan_iter("sms:config:*"):
        redis_client.delete(name)
    imported = cli("config", "import", str(backup))
    assert imported.code == 0
    assert "1 connection(s) and 1 agent(s)" in imported.out
    assert cli("config", "connection", "list").out == listed

    merged = tmp_path / "more.yaml"
    merged.write_text(
        "connections:\n  - label: Twilio - Sales\n    provider: twilio\n    credentials:\n"
        f"      account_sid: {SID}\n      auth_token: ${{TWILIO_TOKEN}}\n"
    )
    assert cli("config", "import", "--merge", str(merged)).code == 0
    assert "Twilio - Sales" in cli("config", "connection", "list").out
    assert "Twilio - Support" in cli("config", "connection", "list").out
    assert TOKEN.encode() not in dump_all(redis_client)


def test_after_rotate_keys_the_old_key_can_be_dropped(
    cli: CliRunner, accounts: FakeTwilioAccounts, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """rotate-keys with [new, old] re-encrypts every secret; with only the new key, the connection
    still reads and still authenticates against Twilio."""
    add_twilio(cli, base=accounts.url)
    new = Crypto.generate_key()
    monkeypatch.setenv("SMS_ENCRYPTION_KEYS", f"{new},{key}")
    rotated = cli("config", "rotate-keys")
    assert rotated.code == 0
    assert "re-encrypted 2 secret(s)" in rotated.out
    monkeypatch.setenv("SMS_ENCRYPTION_KEYS", new)
    assert cli("config", "rotate-keys").out == "every secret already uses the newest key\n"
    tested = cli("config", "connection", "test", "Twilio - Support")
    assert tested.code == 0
    assert tested.out == (
        "connection 'Twilio - Support' (twilio): ok — account active\n"
        "  from-number +1415****000 (connection): ok — on the account, SMS-capable\n"
    )
    monkeypatch.setenv("SMS_ENCRYPTION_KEYS", key)
    refused(cli("config", "connection", "list"), "cannot decrypt")


# -- connection test --------------------------------------------------------------------------------

FakeTwilioAccounts = FakeTwilio  # it answers the account fetch `connection test` makes


@pytest.fixture(scope="module")
def accounts_server() -> Iterator[FakeTwilioAccounts]:
    with FakeTwilioAccounts(account_sid=SID, auth_token=TOKEN) as fake:
        yield fake


@pytest.fixture
def accounts(accounts_server: FakeTwilioAccounts) -> Iterator[FakeTwilioAccounts]:
    accounts_server.reset()
    yield accounts_server
    assert accounts_server.violations == [], "requests broke Twilio's OpenAPI spec"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_connection_test_reports_ok_auth_failed_or_unavailable_in_one_line(
    cli: CliRunner, accounts: FakeTwilioAccounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against Twilio's account endpoint: good credentials → ok (exit 0); a wrong token →
    auth_failed (exit 1); nothing listening → provider_unavailable (exit 1); one line, no secret."""
    add_twilio(cli, "Good", base=accounts.url)
    monkeypatch.setenv("WRONG", "tok-wrong-0000")
    wrong = [
        f"--credential=account_sid={SID}",
        "--credential=auth_token=${WRONG}",
        "--api-base-url",
        accounts.url,
    ]
    assert (
        cli("config", "connection", "add", "Wrong", "--provider", "twilio", *wrong, "--no-verify").code == 0
    )
    down = ["--from-number", "+14155550000", f"--credential=account_sid={SID}", "--credential=auth_token=x"]
    down += ["--api-base-url", f"http://127.0.0.1:{closed_port()}", "--no-verify"]
    assert cli("config", "connection", "add", "Down", "--provider", "twilio", *down).code == 0
    assert cli("config", "connection", "add", "Box", "--provider", "sandbox").code == 0

    expected = {
        "Good": (
            0,
            "connection 'Good' (twilio): ok — account active\n"
            "  from-number +1415****000 (connection): ok — on the account, SMS-capable",
        ),
        "Wrong": (
            1,
            "connection 'Wrong' (twilio): auth_failed — twilio answered 401 (20003): authentication failed",
        ),
        "Down": (1, "connection 'Down' (twilio): provider_unavailable — cannot connect to twilio"),
        "Box": (0, "connection 'Box' (sandbox): ok — the sandbox needs no credentials"),
    }
    for label, (code, line) in expected.items():
        result = cli("config", "connection", "test", label)
        assert (result.code, result.out) == (code, line + "\n")
    fetches = [r for r in accounts.requests if r.path == f"/2010-04-01/Accounts/{SID}.json"]
    assert len(fetches) == 2  # Good and Wrong; Down never connected
    assert accounts.accepted == []  # nothing was sent


def test_connection_test_reads_a_config_file_too(cli: CliRunner, tmp_path: Path) -> None:
    """`connection test --file` checks a connection of a config file (the file store); a custom
    endpoint gets the send's checks, so a private address is refused."""
    path = tmp_path / "sms.yaml"
    path.write_text(
        "connections:\n  - label: Gateway\n    provider: custom\n    custom_api_url: https://10.0.0.8/sms\n"
    )
    result = cli("config", "connection", "test", "Gateway", "--file", str(path))
    assert result.code == 1
    assert result.out.startswith("connection 'Gateway' (custom): sender_invalid — custom_api_url resolves to")


def _connection(provider: str, **credentials: str) -> Connection:
    return Connection.model_validate(
        {
            "label": "L",
            "provider": provider,
            "credentials": credentials,
            "api_base_url": "https://api.example",
        }
    )


@pytest.mark.parametrize(
    ("connection", "path", "status", "answer", "outcome"),
    [
        (_connection("plivo", auth_id="MA1", auth_token=TOKEN), "/v1/Account/MA1/", 200, {}, "ok"),
        (_connection("plivo", auth_id="MA1", auth_token=TOKEN), "/v1/Account/MA1/", 401, {}, "auth_failed"),
        (
            _connection("plivo", auth_id="MA1", auth_token=TOKEN),
            "/v1/Account/MA1/",
            503,
            {},
            "provider_unavailable",
        ),
        (_connection("telnyx", api_key=TOKEN), "/v2/balance", 200, {"data": {}}, "ok"),
        (
            _connection("telnyx", api_key=TOKEN),
            "/v2/balance",
            401,
            {"errors": [{"code": "10009", "title": f"bad key {TOKEN}"}]},
            "auth_failed",
        ),
        (
            _connection("telnyx", api_key=TOKEN, messaging_profile_id="mp-1"),
            "/v2/messaging_profiles/mp-1",
            404,
            {"errors": [{"code": "10005"}]},
            "sender_invalid",
        ),
    ],
    ids=["plivo-ok", "plivo-401", "plivo-503", "telnyx-ok", "telnyx-401", "telnyx-no-profile"],
)
def test_plivo_and_telnyx_checks_read_the_account_and_map_errors(
    connection: Connection, path: str, status: int, answer: dict[str, Any], outcome: str
) -> None:
    """Plivo and Telnyx are checked with one authenticated GET; answers map to the send taxonomy."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=answer)

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        result = probe(connection, timeout=1.0, http=http)
    assert result.outcome == outcome
    assert [(r.method, r.url.path) for r in seen] == [("GET", path)]
    assert "authorization" in seen[0].headers
    assert TOKEN not in result.detail


# -- the file store's commands ---------------------------------------------------------------------


def test_keygen_encrypt_and_validate_still_serve_the_file_store(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """keygen prints a usable key, encrypt turns a secret read from stdin into an enc: token, and
    validate accepts a config file holding it — without printing the secret."""
    new_key = cli("config", "keygen").out.strip()
    assert Crypto([new_key]).enabled
    monkeypatch.setenv("SMS_ENCRYPTION_KEYS", new_key)
    token = cli("config", "encrypt", "-", stdin=TOKEN + "\n").out.strip()
    assert token.startswith("enc:")
    path = tmp_path / "sms.yaml"
    path.write_text(
        "connections:\n  - label: T\n    provider: twilio\n    credentials:\n"
        f"      account_sid: {SID}\n      auth_token: '{token}'\n"
    )
    result = cli("config", "validate", str(path))
    assert result.code == 0
    assert result.out.startswith(f"{path}: valid — 1 connection(s), 0 agent(s)")


# -- the console script -----------------------------------------------------------------------------


def test_the_console_script_runs_the_cli(redis_url: str, redis_client: redis.Redis, key: str) -> None:
    """The installed `midcall-sms` adds and lists a connection; a wrong key exits 2 without a traceback."""
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SMS_")},
        "SMS_REDIS_URL": redis_url,
        "SMS_ENCRYPTION_KEYS": key,
        "SMS_CONFIG_SOURCE": "redis",
    }

    def run(*argv: str, stdin: str = "", **extra: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(CONSOLE_SCRIPT), *argv], input=stdin, capture_output=True, text=True,
            env={**environ, **extra}, timeout=60, check=False,
        )  # fmt: skip
        assert_clean(done.stdout + done.stderr)
        return done

    added = run(
        "config", "connection", "add", "Twilio - Support", "--provider", "twilio",
        "--credential", f"account_sid={SID}", "--credential", "auth_token=-", "--no-verify",
        stdin=TOKEN + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    listed = run("config", "connection", "list")
    assert listed.returncode == 0
    assert "Twilio - Support" in listed.stdout
    wrong = run("config", "connection", "list", SMS_ENCRYPTION_KEYS=Crypto.generate_key())
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("error: connection 'Twilio - Support': credentials.")
    assert TOKEN.encode() not in dump_all(redis_client)
