"""`midcall-sms`: the command line (demo, config tools, sending and watching SMS).

Exit status: 0 done; 1 a `config connection test` found the credentials not working; 2 refused
(bad input, a wrong or missing encryption key, Redis unreachable) with one `error: …` line on
standard error — never a traceback, never a secret.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import redis
from pydantic import ValidationError

from worker import config_cli, dead_cli, logs
from worker.bench import options as bench_options  # argparse and dataclasses only
from worker.config.crypto import Crypto
from worker.config.loader import load_file
from worker.errors import ConfigError, SmsError
from worker.optout_cli import register as register_optout
from worker.redis_client import redacted
from worker.settings import Settings


def _demo(_: argparse.Namespace, __: Settings) -> int:
    from worker import demo

    return demo.main()


def _bench(args: argparse.Namespace, _: Settings) -> int:
    from worker.bench.command import run_args

    return run_args(args)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from worker.http.serve import serve

    return serve(settings, host=args.host, port=args.port)


def _validate(args: argparse.Namespace, settings: Settings) -> int:
    path = args.file or settings.config_file
    if path is None:
        raise ConfigError("give a config file, or set SMS_CONFIG_FILE")
    config = load_file(path, crypto=Crypto(settings.fernet_keys()))
    print(f"{path}: valid — {len(config.connections)} connection(s), {len(config.agents)} agent(s)")
    for connection in config.connections:
        default = " (default)" if connection.default else ""
        print(f"  connection {connection.label!r}: {connection.provider}{default}")
    for agent_id, agent in config.agents.items():
        sms = agent.sms
        state = "enabled" if sms.enabled else "disabled"
        print(f"  agent {agent_id!r}: {state}, {len(sms.templates)} template(s)")
    return 0


def _trail(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from worker import audit

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2.0)
    try:
        trail = audit.call_messages(client, args.call_id, bodies=settings.audit_bodies)
    finally:
        client.close()
    print(json.dumps(trail, indent=2) if args.json else audit.render(trail, args.call_id))
    return 0


def _keygen(_: argparse.Namespace, __: Settings) -> int:
    print(Crypto.generate_key())
    return 0


def _encrypt(args: argparse.Namespace, settings: Settings) -> int:
    value = sys.stdin.readline().rstrip("\n") if args.value == "-" else args.value
    print(Crypto(settings.fernet_keys()).encrypt(value))
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="midcall-sms", description="Text the caller during a live call.")
    commands_ = root.add_subparsers(dest="command", required=True)
    commands_.add_parser(
        "demo", help="run the product end to end: private Redis, worker, sandbox, a call"
    ).set_defaults(run=_demo)
    bench = commands_.add_parser(
        "bench", help="measure latency and throughput against the floor and the baselines (docs/benchmark.md)"
    )
    bench_options.add_arguments(bench)
    bench.set_defaults(run=_bench)
    serve = commands_.add_parser(
        "serve", help="run the HTTP service: provider callbacks, the audit API, /healthz /readyz /metrics"
    )
    serve.add_argument("--host", help="address to listen on (default SMS_HTTP_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default SMS_HTTP_PORT, 8080)")
    serve.set_defaults(run=_serve)
    trail = commands_.add_parser(
        "trail", help="a call's texts: template, masked recipient, every status with its time, receipts"
    )
    trail.add_argument("call_id")
    trail.add_argument(
        "--json", action="store_true", help="print JSON (what GET /v1/calls/{id}/messages returns)"
    )
    trail.set_defaults(run=_trail)
    config = commands_.add_parser(
        "config", help="manage connections and agents (Redis store), keys, and config files"
    ).add_subparsers(dest="config_command", required=True)
    validate = config.add_parser("validate", help="check a config file (default: SMS_CONFIG_FILE)")
    validate.add_argument("file", nargs="?", type=Path)
    validate.set_defaults(run=_validate)
    config.add_parser("keygen", help="print a new Fernet key for SMS_ENCRYPTION_KEYS").set_defaults(
        run=_keygen
    )
    encrypt = config.add_parser("encrypt", help="print an enc: token for a secret ('-' reads standard input)")
    encrypt.add_argument("value")
    encrypt.set_defaults(run=_encrypt)
    config_cli.register(config)
    register_optout(commands_)
    dead_cli.register(commands_)
    return root


def safe_url(url: str) -> str:
    """A Redis URL (plain or Sentinel) without users and passwords, fit for a message."""
    return redacted(url)


def _settings_problems(exc: ValidationError) -> str:
    return "; ".join(
        f"SMS_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"error: settings: {_settings_problems(exc)}", file=sys.stderr)
        return 2
    logs.configure_logging(settings)  # the same pipeline as the worker: JSON (or console) on stderr
    try:
        return int(args.run(args, settings))
    except SmsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except redis.RedisError as exc:
        # redis-py's messages name the host and port, never the password of the URL.
        print(f"error: Redis at {safe_url(settings.redis_url)}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
