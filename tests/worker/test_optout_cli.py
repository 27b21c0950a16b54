"""`midcall-sms optout add|remove|check|list`: the list by hand, numbers shown masked only."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.redis_dump import dump_all
from worker.cli import main

CONFIG = """
connections:
  - {label: "Twilio - Support", provider: sandbox, from_number: "+14155550000"}
  - {label: "Everyone", provider: sandbox, from_number: "+14155550001", opt_out_scope: connection}
"""
NUMBER = "+14155551234"


@pytest.fixture(autouse=True)
def env(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    monkeypatch.setenv("SMS_REDIS_URL", redis_url)
    monkeypatch.setenv("SMS_CONFIG_FILE", str(path))
    monkeypatch.setenv("SMS_NUMBER_HASH_KEY", "cli-test-key")
    monkeypatch.setenv("SMS_LOG_FORMAT", "json")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["optout", *args])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_add_check_list_remove(capsys: pytest.CaptureFixture[str], redis_client: redis.Redis) -> None:
    """add puts the number on the list, check exits 1 while it is there, list shows it masked with
    when and why, remove takes it off and check exits 0; the number is never printed or stored."""
    conn = ("--connection", "Twilio - Support")
    assert run(capsys, "check", NUMBER, *conn) == (0, "+1415****234: not opted out of 'Twilio - Support'\n")
    code, out = run(capsys, "add", NUMBER, *conn, "--reason", "asked on the phone")
    assert code == 0 and "+1415****234: opted out of +14155550000 on 'Twilio - Support'" in out
    code, out = run(capsys, "check", NUMBER, *conn)
    assert code == 1 and "opted out of +14155550000 since 20" in out and "(asked on the phone)" in out
    code, out = run(capsys, "list", *conn)
    header, row = out.splitlines()
    assert header.split() == ["NUMBER", "SENDER", "SINCE", "REASON"]
    assert row.startswith("+1415****234  +14155550000  20") and row.endswith("asked on the phone")
    assert run(capsys, "check", NUMBER, "--from", "+14155550009", *conn)[0] == 0  # another sender
    assert run(capsys, "remove", NUMBER, *conn) == (
        0,
        "+1415****234: 1 opt-out(s) removed from 'Twilio - Support'\n",
    )
    assert run(capsys, "check", NUMBER, *conn)[0] == 0
    assert run(capsys, "list", *conn) == (0, "no opt-outs on 'Twilio - Support'\n")
    assert NUMBER.encode() not in dump_all(redis_client, match="sms:*")


def test_a_connection_scoped_opt_out_covers_every_sender(capsys: pytest.CaptureFixture[str]) -> None:
    """On a connection with `opt_out_scope: connection` an opt-out applies to any sending number."""
    conn = ("--connection", "Everyone")
    code, out = run(capsys, "add", NUMBER, *conn)
    assert code == 0 and "opted out of every number of 'Everyone'" in out
    assert run(capsys, "check", NUMBER, "--from", "+14155550009", *conn)[0] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "+1415", "--connection", "Twilio - Support"], "error: NUMBER: "),
        (["list", "--connection", "Nope"], "error: connection 'Nope': no such connection"),
    ],
)
def test_bad_input_is_refused_with_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """A bad number or an unknown connection exits 2 with one `error:` line."""
    code, out = run(capsys, *args)
    assert code == 2 and out.startswith(message) and out.count("\n") == 1
