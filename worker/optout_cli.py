"""`midcall-sms optout add|remove|check|list --connection LABEL`: the local opt-out list by hand.

Numbers are printed masked; the list itself holds only keyed hashes (`worker/optout.py`).
Exit status: 0 done (`check`: not opted out), 1 `check` found the number opted out, 2 refused.
"""

from __future__ import annotations

import argparse
from typing import Any

import redis

from producers.contract import mask_number
from worker import optout
from worker.config.models import Connection
from worker.config.source import open_source
from worker.errors import ConfigError
from worker.hashing import hash_key
from worker.recipients import InvalidNumber, normalize
from worker.settings import Settings


def _number(value: str, what: str = "NUMBER") -> str:
    try:
        return normalize(value)
    except InvalidNumber as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _connection(settings: Settings, client: redis.Redis, label: str) -> Connection:
    if settings.config_source == "file" and settings.config_file is None:
        raise ConfigError("set SMS_CONFIG_FILE (or SMS_CONFIG_SOURCE=redis) to find the connection")
    config = open_source(settings, client).get()
    found = config.connection(label)
    if found is None:
        known = ", ".join(repr(c.label) for c in config.connections) or "none"
        raise ConfigError(f"connection {label!r}: no such connection (known: {known})")
    return found


def _run(args: argparse.Namespace, settings: Settings) -> int:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        connection = _connection(settings, client, args.connection)
        key = hash_key(settings, client)
        command: str = args.optout_command
        if command == "list":
            return _list(client, connection)
        number = _number(args.number)
        sender = _number(args.from_, "--from") if args.from_ else None
        shown = mask_number(number)
        if command == "add":
            optout.record(client, connection, number, reason=args.reason, sender=sender, key=key)
            scope = (
                "every number of"
                if connection.opt_out_scope == "connection"
                else (f"{sender or connection.from_number} on")
            )
            print(f"{shown}: opted out of {scope} {connection.label!r}")
            return 0
        if command == "remove":
            removed = optout.remove(client, connection, number, sender=sender, key=key)
            print(f"{shown}: {removed} opt-out(s) removed from {connection.label!r}")
            return 0
        entry = optout.check(client, connection, number, sender=sender, key=key)
        if entry is None:
            print(f"{shown}: not opted out of {connection.label!r}")
            return 0
        print(f"{shown}: opted out of {entry.sender} since {entry.at} ({entry.reason})")
        return 1
    finally:
        client.close()


def _list(client: redis.Redis, connection: Connection) -> int:
    found = optout.entries(client, connection)
    if not found:
        print(f"no opt-outs on {connection.label!r}")
        return 0
    rows = [["NUMBER", "SENDER", "SINCE", "REASON"]] + [[e.number, e.sender, e.at, e.reason] for e in found]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def register(commands: Any) -> None:
    """Add `optout` to the root command's subparsers."""
    parser = commands.add_parser("optout", help="the local opt-out list (numbers shown masked)")
    sub = parser.add_subparsers(dest="optout_command", required=True)
    for name, text in (
        ("add", "opt a number out (of the sending number, or the whole connection per opt_out_scope)"),
        ("remove", "opt a number back in"),
        ("check", "is this number opted out? (exit 1 when it is)"),
        ("list", "every opt-out of the connection: masked number, sender, since, reason"),
    ):
        command = sub.add_parser(name, help=text)
        if name != "list":
            command.add_argument("number", help="E.164, e.g. +14155551234")
            command.add_argument(
                "--from", dest="from_", help="the sending number (default: the connection's)"
            )
        if name == "add":
            command.add_argument("--reason", default="added by hand (cli)", help="why, shown by list")
        command.add_argument("--connection", required=True, help="the connection's label")
        command.set_defaults(run=_run)
