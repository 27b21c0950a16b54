"""The number picker on the command line, against each provider's fake: `connection numbers`
(table and JSON), `connection add` checking `--from-number` or offering the account's SMS-capable
numbers (terminal) or refusing with them (no terminal), and `connection test` with one line per
from-number in use. No run prints a secret or a traceback; a refusal stores nothing."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.redis_dump import dump_all
from worker.cli import main
from worker.config.crypto import Crypto
from worker.testing import FakePlivo, FakeServer, FakeTelnyx, FakeTwilio
from worker.testing.accounts import OwnedNumber

SUPPORT, SALES, IVR, MISSING = "+14155550000", "+14155550001", "+14155550009", "+14155550123"
NUMBERS = (
    OwnedNumber(SUPPORT, name="Support line"),
    OwnedNumber(SALES, name="Sales", mms=False),
    OwnedNumber.voice_only(IVR, name="IVR"),
)
WRONG = "wrong-secret-8c2d"
CONSOLE_SCRIPT = Path(sys.executable).parent / "midcall-sms"


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, FakeServer]]:
    with (
        FakeTwilio(numbers=NUMBERS) as twilio,
        FakePlivo(numbers=NUMBERS) as plivo,
        FakeTelnyx(numbers=NUMBERS) as telnyx,
    ):
        yield {"twilio": twilio, "plivo": plivo, "telnyx": telnyx}


@pytest.fixture(params=["twilio", "plivo", "telnyx"])
def fake(request: pytest.FixtureRequest, servers: dict[str, FakeServer]) -> Iterator[FakeServer]:
    server = servers[request.param]
    server.reset()
    yield server
    assert server.violations == [], "a request broke the provider's contract"
    assert server.accepted == [], "nothing may be sent"


def secrets_of(fake: FakeServer) -> list[str]:
    return [s for s in (getattr(fake, a, None) for a in ("auth_token", "api_key")) if s] + [WRONG]


@pytest.fixture
def key() -> str:
    return Crypto.generate_key()


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    redis_url: str,
    redis_client: redis.Redis,
    key: str,
    servers: dict[str, FakeServer],
) -> Callable[..., Run]:
    """Runs `midcall-sms` in-process on a clean store; `tty=True` makes standard input a terminal.
    Every run is checked for tracebacks and for every fake's secrets."""
    monkeypatch.setenv("SMS_REDIS_URL", redis_url)
    monkeypatch.setenv("SMS_ENCRYPTION_KEYS", key)
    monkeypatch.setenv("SMS_CONFIG_SOURCE", "redis")
    secrets = [s for fake in servers.values() for s in secrets_of(fake)]

    def run(*argv: str, stdin: str = "", tty: bool = False) -> Run:
        stream = io.StringIO(stdin)
        stream.isatty = lambda: tty  # type: ignore[method-assign]
        monkeypatch.setattr(sys, "stdin", stream)
        code = main(list(argv))
        captured = capsys.readouterr()
        result = Run(code, captured.out, captured.err)
        text = result.out + result.err
        assert "Traceback" not in text
        for secret in secrets:
            assert secret not in text, f"a secret ending {secret[-4:]} was printed"
        return result

    return run


def credentials(fake: FakeServer, *, secret: str | None = None) -> list[str]:
    """`connection add` options for `fake`'s account (`secret` replaces its token or key)."""
    if isinstance(fake, FakeTwilio):
        pairs = {"account_sid": fake.account_sid, "auth_token": secret or fake.auth_token}
    elif isinstance(fake, FakePlivo):
        pairs = {"auth_id": fake.auth_id, "auth_token": secret or fake.auth_token}
    else:
        assert isinstance(fake, FakeTelnyx)
        pairs = {"api_key": secret or fake.api_key}
    provider = type(fake).__name__.removeprefix("Fake").lower()
    options = ["--provider", provider, "--api-base-url", fake.url]
    for name, value in pairs.items():
        options.append(f"--credential={name}={value}")
    return options


def add(cli: Callable[..., Run], fake: FakeServer, *extra: str, label: str = "Main", **kw: Any) -> Run:
    return cli("config", "connection", "add", label, *credentials(fake), *extra, **kw)


def agent(cli: Callable[..., Run], agent_id: str, **sms: Any) -> None:
    body = json.dumps({"voice_tools": {"sms_mid_call": {"enabled": True, **sms}}})
    assert cli("config", "agent", "set", agent_id, stdin=body).code == 0


def refusal(result: Run) -> str:
    """The one `error:` line of a refused command (exit 2, nothing on standard output)."""
    assert (result.code, result.out) == (2, ""), result
    lines = [line for line in result.err.splitlines() if not line.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    return lines[0]


def nothing_stored(redis_client: redis.Redis) -> bool:
    return dump_all(redis_client, match="sms:config:*") == b""


# -- connection numbers --------------------------------------------------------------------------------


def test_numbers_lists_the_account_with_capabilities_names_and_users(
    cli: Callable[..., Run], fake: FakeServer
) -> None:
    """The table shows every number of the account in full with SMS/MMS/voice and its name, and
    which one the connection and each agent use; a sender the account lacks is masked."""
    assert add(cli, fake, "--from-number", SUPPORT, "--default").code == 0
    agent(cli, "agent_ivr", connection="Main", from_number=IVR)
    agent(cli, "agent_lost", connection="Main", from_number=MISSING)

    listed = cli("config", "connection", "numbers", "Main")
    assert listed.code == 0, listed
    head, columns, *rows = listed.out.splitlines()
    provider = type(fake).__name__.removeprefix("Fake").lower()
    assert head == f"connection 'Main' ({provider}): 3 number(s), 2 SMS-capable"
    assert columns.split() == ["NUMBER", "SMS", "MMS", "VOICE", "NAME", "DETAILS", "USED", "BY"]
    by_number = {row.split()[0]: row for row in rows}
    assert list(by_number) == [SUPPORT, SALES, IVR, "+1415****123"]
    assert by_number[SUPPORT].split()[1:4] == ["yes", "yes", "yes"]
    assert by_number[SUPPORT].endswith("connection")
    assert by_number[SALES].split()[1:4] == ["yes", "-", "yes"]
    assert by_number[IVR].split()[1:4] == ["-", "-", "yes"] and by_number[IVR].endswith("agent agent_ivr")
    assert "Support line" in by_number[SUPPORT] and " IVR " in by_number[IVR]
    assert "not on the account" in by_number["+1415****123"]
    assert MISSING not in listed.out
    if provider == "telnyx":
        assert "messaging profile Fake messaging profile" in by_number[SUPPORT]
        assert "messaging profile" not in by_number[IVR]


def test_numbers_json_is_for_scripts(cli: Callable[..., Run], fake: FakeServer) -> None:
    """`--json`: the numbers with their capabilities and users, and each sender checked (masked)."""
    assert add(cli, fake, "--from-number", SALES).code == 0
    agent(cli, "agent_ivr", connection="Main", from_number=IVR)
    result = cli("config", "connection", "numbers", "Main", "--json")
    assert result.code == 0
    document = json.loads(result.out)
    assert [(n["number"], n["sms"], n["mms"], n["voice"], n["name"]) for n in document["numbers"]] == [
        (SUPPORT, True, True, True, "Support line"),
        (SALES, True, False, True, "Sales"),
        (IVR, False, False, True, "IVR"),
    ]
    assert [n["used_by"] for n in document["numbers"]] == [[], ["connection"], ["agent agent_ivr"]]
    assert document["senders"] == [
        {
            "number": "+1415****001",
            "used_by": ["connection"],
            "ok": True,
            "reason": "on the account, SMS-capable",
        },
        {
            "number": "+1415****009",
            "used_by": ["agent agent_ivr"],
            "ok": False,
            "reason": "on the account but not SMS-capable (voice only)",
        },
    ]
    assert document["truncated"] is False


def test_numbers_with_wrong_credentials_is_one_line_exit_1(cli: Callable[..., Run], fake: FakeServer) -> None:
    """A token the provider refuses: `numbers` says auth_failed in one line and exits 1, secret-free;
    `--json` says the same as an error object."""
    options = [*credentials(fake, secret=WRONG), "--from-number", SUPPORT, "--no-verify"]
    assert cli("config", "connection", "add", "Main", *options).code == 0
    result = cli("config", "connection", "numbers", "Main")
    provider = type(fake).__name__.removeprefix("Fake").lower()
    assert result.code == 1
    assert result.out.startswith(f"connection 'Main' ({provider}): auth_failed — {provider} answered 401")
    assert len(result.out.splitlines()) == 1
    as_json = cli("config", "connection", "numbers", "Main", "--json")
    assert as_json.code == 1 and json.loads(as_json.out)["error"]["code"] == "auth_failed"
    fake.reset()  # the refused requests are no contract violation


def test_the_sandbox_and_a_custom_endpoint_answer_honestly(cli: Callable[..., Run]) -> None:
    """The sandbox lists its documented number and says it sends from any; a custom endpoint has no list."""
    assert cli("config", "connection", "add", "Box", "--provider", "sandbox").code == 0
    box = cli("config", "connection", "numbers", "Box")
    assert box.code == 0
    assert box.out.splitlines()[0] == (
        "connection 'Box' (sandbox): 1 number(s), 1 SMS-capable; the sandbox sends from any number"
    )
    assert "+15005550006" in box.out and "Sandbox sender" in box.out
    gateway = ["--provider", "custom", "--custom-api-url", "https://gw.example/sms"]
    assert cli("config", "connection", "add", "Gateway", *gateway).code == 0
    custom = cli("config", "connection", "numbers", "Gateway")
    assert (custom.code, custom.out) == (
        0,
        "connection 'Gateway' (custom): a custom endpoint has no list of numbers: "
        "it sends from whatever number it uses\n",
    )
    assert json.loads(cli("config", "connection", "numbers", "Gateway", "--json").out)["numbers"] is None


# -- connection add -------------------------------------------------------------------------------------


def test_add_checks_the_from_number_against_the_account(
    cli: Callable[..., Run], fake: FakeServer, redis_client: redis.Redis
) -> None:
    """A voice-only number and one the account lacks are refused, naming the number masked and the
    reason, and nothing is stored; an SMS-capable number of the account is stored."""
    provider = type(fake).__name__.removeprefix("Fake").lower()
    voice = refusal(add(cli, fake, "--from-number", IVR))
    assert voice == (
        f"error: connection 'Main': --from-number +1415****009 cannot send SMS through this {provider} "
        "account: on the account but not SMS-capable (voice only); nothing was stored "
        "(--no-verify skips this check)"
    )
    missing = refusal(add(cli, fake, "--from-number", MISSING))
    assert "--from-number +1415****123 cannot send SMS" in missing and ": not on the account;" in missing
    assert IVR not in voice and MISSING not in missing
    assert nothing_stored(redis_client)

    added = add(cli, fake, "--from-number", SALES)
    assert added.code == 0
    assert added.out.endswith("; from-number +1415****001 on the account, SMS-capable\n")


def test_add_without_a_from_number_off_a_terminal_refuses_with_the_list(
    cli: Callable[..., Run], fake: FakeServer, redis_client: redis.Redis
) -> None:
    """Not on a terminal: refused in one line that lists the SMS-capable numbers (not the voice-only
    one); nothing half-configured is stored."""
    line = refusal(add(cli, fake))
    assert line == (
        "error: connection 'Main': needs --from-number; nothing was stored. "
        f"The account's SMS-capable numbers: {SUPPORT}, {SALES}"
    )
    assert nothing_stored(redis_client)


def test_add_without_a_from_number_on_a_terminal_offers_the_numbers(
    cli: Callable[..., Run], fake: FakeServer, redis_client: redis.Redis
) -> None:
    """On a terminal the SMS-capable numbers are offered; a wrong answer is asked again, a position
    picks one; the connection is stored with it. Without an answer nothing is stored."""
    gave_up = add(cli, fake, stdin="", tty=True)
    assert (gave_up.code, gave_up.out) == (2, "")
    assert (
        gave_up.err.splitlines()[-1] == "error: connection 'Main': no from-number chosen; nothing was stored"
    )
    assert nothing_stored(redis_client)

    picked = add(cli, fake, stdin="9\n2\n", tty=True)
    assert picked.code == 0, picked
    assert picked.err.splitlines()[:3] == [
        "connection 'Main': the account's SMS-capable numbers:",
        f"    1  {SUPPORT}  Support line",
        f"    2  {SALES}  Sales",
    ]
    assert "not one of the 2 numbers above" in picked.err and IVR not in picked.err
    assert "from-number +1415****001 chosen" in picked.out
    shown = cli("config", "connection", "show", "Main").out
    assert f"from_number: '{SALES}'" in shown


def test_add_with_wrong_credentials_is_refused_without_the_secret(
    cli: Callable[..., Run], fake: FakeServer, redis_client: redis.Redis
) -> None:
    """The check cannot read the account: refused with the provider's answer, nothing stored."""
    options = credentials(fake, secret=WRONG)
    line = refusal(cli("config", "connection", "add", "Main", *options, "--from-number", SUPPORT))
    assert "cannot check --from-number +1415****000: auth_failed — " in line
    assert nothing_stored(redis_client)
    fake.reset()


def test_no_verify_stores_without_asking_the_provider(cli: Callable[..., Run], fake: FakeServer) -> None:
    """`--no-verify`: no request reaches the provider, the number is stored as given."""
    assert add(cli, fake, "--from-number", MISSING, "--no-verify").code == 0
    assert fake.requests == []


def test_add_on_a_real_terminal_through_the_console_script(
    redis_url: str, redis_client: redis.Redis, key: str, servers: dict[str, FakeServer]
) -> None:
    """The installed `midcall-sms` with a pseudo-terminal on standard input offers the numbers and
    stores the one typed."""
    twilio = servers["twilio"]
    leader, follower = pty.openpty()
    env = {**os.environ, "SMS_REDIS_URL": redis_url, "SMS_ENCRYPTION_KEYS": key, "SMS_CONFIG_SOURCE": "redis"}
    try:
        os.write(leader, b"1\n")
        done = subprocess.run(
            [str(CONSOLE_SCRIPT), "config", "connection", "add", "Main", *credentials(twilio)],
            stdin=follower,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    finally:
        os.close(leader)
        os.close(follower)
    assert done.returncode == 0, done.stderr
    assert "from-number [1-2]: " in done.stderr
    assert "from-number +1415****000 chosen" in done.stdout
    assert twilio.auth_token not in done.stdout + done.stderr  # type: ignore[attr-defined]


# -- connection test --------------------------------------------------------------------------------------


def test_connection_test_checks_every_from_number_in_use(cli: Callable[..., Run], fake: FakeServer) -> None:
    """Credentials ok, then one line per from-number of the connection and its agents; exit 1 while
    one is voice-only or missing, 0 once every one is an SMS-capable number of the account."""
    assert add(cli, fake, "--from-number", SUPPORT).code == 0
    agent(cli, "agent_sales", connection="Main", from_number=SALES)
    agent(cli, "agent_ivr", connection="Main", from_number=IVR)
    agent(cli, "agent_lost", connection="Main", from_number=MISSING)
    provider = type(fake).__name__.removeprefix("Fake").lower()
    ok = {"twilio": "account active", "plivo": "account found", "telnyx": "api key accepted"}[provider]

    tested = cli("config", "connection", "test", "Main")
    assert tested.code == 1
    assert tested.out.splitlines() == [
        f"connection 'Main' ({provider}): ok — {ok}",
        "  from-number +1415****000 (connection): ok — on the account, SMS-capable",
        "  from-number +1415****009 (agent agent_ivr): fail — "
        "on the account but not SMS-capable (voice only)",
        "  from-number +1415****123 (agent agent_lost): fail — not on the account",
        "  from-number +1415****001 (agent agent_sales): ok — on the account, SMS-capable",
    ]
    for agent_id in ("agent_ivr", "agent_lost"):
        assert cli("config", "agent", "remove", agent_id).code == 0
    again = cli("config", "connection", "test", "Main")
    assert again.code == 0 and len(again.out.splitlines()) == 3


def test_connection_test_without_any_from_number_fails(cli: Callable[..., Run], fake: FakeServer) -> None:
    """A connection stored unchecked without a from-number, used by no agent that has one: exit 1."""
    assert add(cli, fake, "--no-verify").code == 0
    tested = cli("config", "connection", "test", "Main")
    assert tested.code == 1
    assert (
        tested.out.splitlines()[1]
        == "  no from-number: neither the connection nor an agent using it sets one"
    )
