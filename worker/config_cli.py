"""`midcall-sms config …` commands on the Redis config store: connections, agents, import/export, keys.

Each command prints its result on standard output, or raises `ConfigError` (which `worker.cli`
prints as one `error: …` line, exit status 2). No command prints a secret: `show` and `list` mask
them, `export` writes `enc:` tokens. `connection test` exits 1 when the credentials do not work or
a from-number is not an SMS-capable number of the account; `connection numbers` exits 1 when the
account's numbers cannot be read. What they show of phone numbers: `worker/providers/senders.py`.

This module sits above both `worker.config` (the store) and `worker.providers` (the account
requests), so that `worker.config` never imports `worker.providers`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from producers.contract import mask_number
from worker import redis_client
from worker.config import sealed
from worker.config.crypto import Crypto
from worker.config.loader import expand_vars, load_file, parse_text, validate
from worker.config.models import Agent, Connection, SmsConfig
from worker.config.store import RedisConfigStore
from worker.errors import ConfigError
from worker.provider_specs import SPECS
from worker.providers import provider_class, senders
from worker.providers.probe import list_numbers, probe
from worker.settings import Settings

if TYPE_CHECKING:  # generic only in typeshed, not at run time
    #: what `ArgumentParser.add_subparsers()` returns
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]


# -- plumbing ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _store(settings: Settings, *, writes: bool = False) -> Iterator[RedisConfigStore]:
    crypto = Crypto(settings.fernet_keys())  # a malformed key is refused before Redis is touched
    if writes and settings.config_source != "redis":
        print(
            "note: SMS_CONFIG_SOURCE is 'file' here: workers with that setting read SMS_CONFIG_FILE, "
            "not this store",
            file=sys.stderr,
        )
    client = redis_client.connect(settings, socket_connect_timeout=2.0, socket_timeout=10.0)
    try:
        yield RedisConfigStore(client, crypto)
    finally:
        redis_client.close(client)


def _read_text(name: str, *, what: str) -> str:
    if name == "-":
        return sys.stdin.read()
    try:
        return Path(name).read_text()
    except OSError as exc:
        raise ConfigError(f"{what} {name}: cannot read it ({exc.strerror})") from None


def _pairs(items: Sequence[str], *, option: str, field: str) -> dict[str, str]:
    """`NAME=VALUE` options as a dict. A VALUE of `-` reads one line of standard input and `${VAR}`
    reads the environment, so that a secret need not be typed on the command line."""
    pairs: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            # Never echo the argument: it may be a secret given without its name.
            raise ConfigError(f"{option}: expected NAME=VALUE")
        where = f"{field}.{name}"
        if value == "-":
            line = sys.stdin.readline()
            if not line:
                raise ConfigError(f"{where}: nothing left on standard input")
            value = line.rstrip("\r\n")
        pairs[name] = expand_vars(value, env=os.environ, where=where)
    return pairs


_table = senders.table


def _found_connection(config: SmsConfig, label: str) -> Connection:
    connection = config.connection(label)
    if connection is None:
        known = ", ".join(repr(c.label) for c in config.connections) or "none"
        raise ConfigError(f"connection {label!r}: no such connection (known: {known})")
    return connection


def _found_agent(config: SmsConfig, agent_id: str) -> Agent:
    agent = config.agents.get(agent_id)
    if agent is None:
        raise ConfigError(f"agent {agent_id!r}: no such agent")
    return agent


# -- connections ------------------------------------------------------------------------------------


def _connection_add(args: argparse.Namespace, settings: Settings) -> int:
    data: dict[str, Any] = {"label": args.label, "provider": args.provider}
    for name in ("from_number", "api_base_url", "custom_api_url"):
        if getattr(args, name) is not None:
            data[name] = getattr(args, name)
    if args.default:
        data["default"] = True
    if args.credential:
        data["credentials"] = _pairs(args.credential, option="--credential", field="credentials")
    if args.header:
        data["custom_api_headers"] = _pairs(args.header, option="--header", field="custom_api_headers")
    with _store(settings, writes=True) as store:
        connection = store.connection_from(data)
        if not args.replace and connection.label in store.snapshot().connections:
            # Said before the provider is asked (and the user picks a number) as well as at the write.
            raise ConfigError(
                f"connection {connection.label!r}: already exists (use --replace to overwrite it)"
            )
        checked = ""
        if not args.no_verify:
            data, checked = _with_checked_sender(connection, data, settings)
        connection = store.add_connection(data, replace=args.replace)
    secrets = len(connection.credentials) + len(connection.custom_api_headers)
    saved = f"connection {connection.label!r} ({connection.provider}) saved; {secrets} secret(s) encrypted"
    print(saved + (f"; {checked}" if checked else ""))
    return 0


def _with_checked_sender(
    connection: Connection, data: dict[str, Any], settings: Settings
) -> tuple[dict[str, Any], str]:
    """`data` with a from-number the account can send SMS from, and what was checked ("" if nothing).

    `--from-number` is checked against the account's numbers; without one, a provider that needs
    a sender offers the SMS-capable numbers on a terminal and refuses with their list elsewhere."""
    provider = provider_class(connection.provider)
    subject = f"connection {connection.label!r}"
    given = connection.from_number
    if given is None and not provider.requires_sender(connection):
        return data, ""
    result = list_numbers(connection, timeout=settings.provider_timeout)
    if result.unsupported is not None:
        return data, ""
    if result.error is not None:
        what = f"--from-number {mask_number(given)}" if given else "the account's numbers"
        raise ConfigError(
            f"{subject}: cannot check {what}: {result.error.outcome} — {result.error.detail}; "
            "nothing was stored (--no-verify skips this check)"
        )
    listing = result.listing
    assert listing is not None
    if given is not None:
        check = provider.check_sender(connection, listing, given)
        if not check.ok:
            raise senders.refuse_sender(connection, check)
        return data, f"from-number {mask_number(given)} {check.reason}"
    candidates = tuple(
        n for n in listing.sms_capable if provider.check_sender(connection, listing, n.number).ok
    )
    if not candidates:
        raise ConfigError(
            f"{subject}: needs --from-number, and the {connection.provider} account has no number it "
            "can send SMS from; nothing was stored"
        )
    if not senders.interactive():
        raise ConfigError(
            f"{subject}: needs --from-number; nothing was stored. The account's SMS-capable numbers: "
            f"{senders.listed(candidates)}"
        )
    chosen = senders.pick(connection, candidates, stdin=sys.stdin, out=sys.stderr)
    return {**data, "from_number": chosen}, f"from-number {mask_number(chosen)} chosen"


def _connection_list(_: argparse.Namespace, settings: Settings) -> int:
    with _store(settings) as store:
        config = store.load()
    if not config.connections:
        print("no connections")
        return 0
    rows = [["LABEL", "PROVIDER", "DEFAULT", "FROM", "CREDENTIALS"]]
    for c in config.connections:
        secrets = " ".join(f"{k}={sealed.mask(v.get_secret_value())}" for k, v in c.credentials.items())
        rows.append([c.label, c.provider, "yes" if c.default else "", c.from_number or "", secrets])
    print(_table(rows))
    return 0


def _connection_show(args: argparse.Namespace, settings: Settings) -> int:
    with _store(settings) as store:
        connection = _found_connection(store.load(), args.label)
    print(yaml.safe_dump(sealed.masked(connection), sort_keys=False, allow_unicode=True), end="")
    return 0


def _connection_remove(args: argparse.Namespace, settings: Settings) -> int:
    with _store(settings, writes=True) as store:
        store.remove_connection(args.label)
    print(f"connection {args.label!r} removed")
    return 0


def _load(args: argparse.Namespace, settings: Settings) -> SmsConfig:
    """The config `--file` names, else the store's."""
    if args.file is not None:
        return load_file(args.file, crypto=Crypto(settings.fernet_keys()))
    with _store(settings) as store:
        return store.load()


def _connection_test(args: argparse.Namespace, settings: Settings) -> int:
    config = _load(args, settings)
    connection = _found_connection(config, args.label)
    result = probe(
        connection, timeout=settings.provider_timeout, allow_private=settings.allow_private_endpoints
    )
    print(f"connection {connection.label!r} ({connection.provider}): {result.outcome} — {result.detail}")
    if result.outcome != "ok":
        return 0 if result.ok else 1
    uses = senders.senders_of(config, connection)
    numbers = list_numbers(connection, timeout=settings.provider_timeout)
    if numbers.unsupported is not None:
        return 0
    if numbers.error is not None:
        print(f"  from-numbers not checked: {numbers.error.outcome} — {numbers.error.detail}")
        return 1
    assert numbers.listing is not None
    if not uses:
        if not provider_class(connection.provider).requires_sender(connection):
            return 0
        print("  no from-number: neither the connection nor an agent using it sets one")
        return 1
    checks = senders.check_senders(connection, numbers.listing, uses)
    for use, check in zip(uses, checks, strict=True):
        verdict = "ok" if check.ok else "fail"
        who = ", ".join(use.users)
        print(f"  from-number {mask_number(use.number)} ({who}): {verdict} — {check.reason}")
    return 0 if all(check.ok for check in checks) else 1


def _connection_numbers(args: argparse.Namespace, settings: Settings) -> int:
    config = _load(args, settings)
    connection = _found_connection(config, args.label)
    result = list_numbers(connection, timeout=settings.provider_timeout)
    uses = senders.senders_of(config, connection)
    if args.json:
        print(senders.numbers_json(connection, result, uses))
    elif result.unsupported is not None:
        print(f"connection {connection.label!r} ({connection.provider}): {result.unsupported}")
    elif result.error is not None:
        print(
            f"connection {connection.label!r} ({connection.provider}): "
            f"{result.error.outcome} — {result.error.detail}"
        )
    else:
        assert result.listing is not None
        print(senders.numbers_table(connection, result.listing, uses))
    return 1 if result.error is not None else 0


# -- agents -----------------------------------------------------------------------------------------


def _agent_set(args: argparse.Namespace, settings: Settings) -> int:
    text = _read_text(args.body, what="agent body")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"agent {args.agent_id!r}: the body is not valid JSON ({exc.msg} at line {exc.lineno} "
            f"column {exc.colno})"
        ) from None
    if not isinstance(body, dict):
        raise ConfigError(f"agent {args.agent_id!r}: the body must be a JSON object")
    with _store(settings, writes=True) as store:
        agent = store.set_agent(args.agent_id, body, replace=args.replace)
    print(f"agent {args.agent_id!r} saved: {_agent_summary(agent)}")
    return 0


def _agent_summary(agent: Agent) -> str:
    sms = agent.sms
    if sms.connection:
        through = f"connection {sms.connection!r}"
    elif sms.provider is not None and SPECS[sms.provider].endpoint_url:
        through = f"its {sms.provider} endpoint"
    elif sms.provider:
        through = f"the default {sms.provider} connection"
    else:
        through = "no provider"
    state = "enabled" if sms.enabled else "disabled"
    return f"{state}, sends through {through}, {len(sms.templates)} template(s)"


def _agent_show(args: argparse.Namespace, settings: Settings) -> int:
    with _store(settings) as store:
        agent = _found_agent(store.load(), args.agent_id)
    print(json.dumps(sealed.masked(agent), indent=2, ensure_ascii=False))
    return 0


def _agent_list(_: argparse.Namespace, settings: Settings) -> int:
    with _store(settings) as store:
        config = store.load()
    if not config.agents:
        print("no agents")
        return 0
    for agent_id in sorted(config.agents):
        print(f"{agent_id}: {_agent_summary(config.agents[agent_id])}")
    return 0


def _agent_remove(args: argparse.Namespace, settings: Settings) -> int:
    with _store(settings, writes=True) as store:
        store.remove_agent(args.agent_id)
    print(f"agent {args.agent_id!r} removed")
    return 0


# -- the whole config -------------------------------------------------------------------------------


def _import(args: argparse.Namespace, settings: Settings) -> int:
    source = "standard input" if args.file == "-" else args.file
    data = parse_text(_read_text(args.file, what="config file"), source=source)
    # `${VAR}` and `enc:` values are resolved here, with this environment and these keys.
    config = validate(data, crypto=Crypto(settings.fernet_keys()), source=source)
    with _store(settings, writes=True) as store:
        stored = store.import_config(config, merge=args.merge)
    print(
        f"imported {source}: the store now has {len(stored.connections)} connection(s) "
        f"and {len(stored.agents)} agent(s)"
    )
    return 0


def _export(args: argparse.Namespace, settings: Settings) -> int:
    with _store(settings) as store:
        document = store.export()
    text = "# midcall-sms config export: secrets are enc: tokens (open them with SMS_ENCRYPTION_KEYS)\n"
    text += yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    if args.output is None:
        print(text, end="")
    else:
        args.output.write_text(text)
        print(f"exported to {args.output}", file=sys.stderr)
    return 0


def _rotate_keys(_: argparse.Namespace, settings: Settings) -> int:
    with _store(settings, writes=True) as store:
        rotated = store.rotate_keys()
    if rotated:
        print(
            f"re-encrypted {rotated} secret(s) with the newest key; "
            "the older keys can now be removed from SMS_ENCRYPTION_KEYS"
        )
    else:
        print("every secret already uses the newest key")
    return 0


# -- the parser -------------------------------------------------------------------------------------


def register(config: Subcommands) -> None:
    """Add the store's commands to `midcall-sms config`."""
    connection = config.add_parser("connection", help="labelled provider connections in the Redis store")
    connections = connection.add_subparsers(dest="connection_command", required=True)
    add = connections.add_parser("add", help="add a connection; its secrets are stored encrypted")
    add.add_argument("label", help='e.g. "Twilio - Support"; agents refer to it by this label')
    add.add_argument(
        "--provider",
        required=True,
        metavar="PROVIDER",
        # Not `choices`: a wrong name is refused by the config model in one `error:` line.
        help="; ".join(f"{spec.name}: {spec.summary}" for spec in SPECS.values()),
    )
    add.add_argument("--default", action="store_true", help="the default connection of its provider")
    add.add_argument("--from-number", help="default sender, E.164")
    add.add_argument("--api-base-url", help="regional endpoint (or a local fake)")
    endpoints = ", ".join(spec.name for spec in SPECS.values() if spec.endpoint_url)
    add.add_argument("--custom-api-url", help=f"{endpoints}: the URL to POST to")
    secret_help = "VALUE '-' reads a line of standard input, '${VAR}' the environment; repeatable"
    fields = "; ".join(spec.credentials_help() for spec in SPECS.values())
    add.add_argument(
        "--credential",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"a credential field ({fields}); {secret_help}",
    )
    add.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"{endpoints}: a header to send; {secret_help}",
    )
    add.add_argument("--replace", action="store_true", help="overwrite a connection with this label")
    add.add_argument(
        "--no-verify",
        action="store_true",
        help="store without asking the provider (offline set-ups): the from-number is not checked",
    )
    add.set_defaults(run=_connection_add)
    connections.add_parser("list", help="every connection, secrets masked").set_defaults(run=_connection_list)
    for name, run, text in (
        ("show", _connection_show, "one connection, secrets masked"),
        ("remove", _connection_remove, "remove a connection no agent uses"),
        ("test", _connection_test, "check the credentials and every from-number in use (sends nothing)"),
        ("numbers", _connection_numbers, "the account's numbers, what each can do, which ones are used"),
    ):
        command = connections.add_parser(name, help=text)
        command.add_argument("label")
        command.set_defaults(run=run)
        if name in ("test", "numbers"):
            command.add_argument("--file", type=Path, help="a connection of this config file instead")
        if name == "numbers":
            command.add_argument("--json", action="store_true", help="JSON for scripts")

    agent = config.add_parser("agent", help="agents' voice_tools.sms_mid_call in the Redis store")
    agents = agent.add_subparsers(dest="agent_command", required=True)
    set_ = agents.add_parser("set", help="merge the platform's agent JSON body into the agent (like a PATCH)")
    set_.add_argument("agent_id")
    set_.add_argument("body", nargs="?", default="-", help="JSON file ('-', the default: standard input)")
    set_.add_argument("--replace", action="store_true", help="store the body as given instead of merging")
    set_.set_defaults(run=_agent_set)
    agents.add_parser("list", help="every agent").set_defaults(run=_agent_list)
    for name, run, text in (
        ("show", _agent_show, "one agent's body, secrets masked"),
        ("remove", _agent_remove, "remove an agent (its jobs then fail with sms_disabled)"),
    ):
        command = agents.add_parser(name, help=text)
        command.add_argument("agent_id")
        command.set_defaults(run=run)

    import_ = config.add_parser("import", help="load a YAML/JSON config file into the store (atomic)")
    import_.add_argument("file", help="config file ('-': standard input)")
    import_.add_argument("--merge", action="store_true", help="add and overwrite items; keep the others")
    import_.set_defaults(run=_import)
    export = config.add_parser("export", help="print the store as YAML, secrets as enc: tokens")
    export.add_argument("--output", type=Path, help="write to this file instead")
    export.set_defaults(run=_export)
    config.add_parser(
        "rotate-keys", help="re-encrypt every secret with the newest key of SMS_ENCRYPTION_KEYS"
    ).set_defaults(run=_rotate_keys)
