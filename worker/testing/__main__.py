"""Run one fake provider in the foreground: `python -m worker.testing twilio --port 8081 --latency-ms 100`.

The first line on stdout is the fake's base URL (the benchmark reads it); the Telnyx fake adds a second,
`webhook_public_key=<base64>`, the key its webhooks verify with. The process serves until SIGTERM or
SIGINT. Status callbacks go to the URL each send request names (every recipient: delivered).
Spec validation is on by default and costs ~5-15 ms of CPU per request on the
fake's single event loop, so load tests should pass `--no-validate`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable

from worker.testing import plivo, twilio
from worker.testing.custom import FakeCustomEndpoint
from worker.testing.server import FakeServer, ServerOptions
from worker.testing.telnyx import DEFAULT_API_KEY, FakeTelnyx

_RECORDED = 10_000  # a long-running fake keeps only the newest requests in memory


def _twilio(args: argparse.Namespace, validate: bool, options: ServerOptions) -> FakeServer:
    token = args.auth_token or twilio.DEFAULT_AUTH_TOKEN
    return twilio.FakeTwilio(args.account_sid, token, validate=validate, **options)


def _plivo(args: argparse.Namespace, validate: bool, options: ServerOptions) -> FakeServer:
    token = args.auth_token or plivo.DEFAULT_AUTH_TOKEN
    return plivo.FakePlivo(args.auth_id, token, validate=validate, **options)


def _telnyx(args: argparse.Namespace, validate: bool, options: ServerOptions) -> FakeServer:
    return FakeTelnyx(args.api_key, validate=validate, **options)


def _custom(args: argparse.Namespace, validate: bool, options: ServerOptions) -> FakeServer:
    return FakeCustomEndpoint(dict(args.header), path=args.path, **options)


#: Each provider's fake by provider name (a new provider's fake adds its line here).
FAKES: dict[str, Callable[[argparse.Namespace, bool, ServerOptions], FakeServer]] = {
    "twilio": _twilio,
    "plivo": _plivo,
    "telnyx": _telnyx,
    "custom": _custom,
}


def build(args: argparse.Namespace) -> FakeServer:
    """The fake that the parsed command line describes."""
    options: ServerOptions = {
        "host": args.host,
        "port": args.port,
        "latency": args.latency_ms / 1000,
        "max_recorded": _RECORDED,
    }
    return FAKES[args.provider](args, not args.no_validate, options)


def _header(item: str) -> tuple[str, str]:
    name, sep, value = item.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"--header wants 'Name: value', got {item!r}")
    return name.strip(), value.strip()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m worker.testing", description=__doc__.splitlines()[0])
    p.add_argument("provider", choices=list(FAKES))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="added before every answer")
    p.add_argument("--no-validate", action="store_true", help="skip the OpenAPI/model check of each request")
    p.add_argument("--account-sid", default=twilio.DEFAULT_ACCOUNT_SID, help="twilio")
    p.add_argument("--auth-token", default=None, help="twilio, plivo (default: the fake's own)")
    p.add_argument("--auth-id", default=plivo.DEFAULT_AUTH_ID, help="plivo")
    p.add_argument("--api-key", default=DEFAULT_API_KEY, help="telnyx")
    p.add_argument(
        "--header", type=_header, action="append", default=[], help="custom: a required 'Name: value' header"
    )
    p.add_argument("--path", default=None, help="custom: the only path accepted (default: any)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    with build(args) as fake:
        print(fake.url, flush=True)
        if isinstance(fake, FakeTelnyx):
            print(f"webhook_public_key={fake.webhook_public_key}", flush=True)
        stopping.wait()
        violations = fake.violations
    if violations:
        print(f"{len(violations)} contract violations, first: {violations[0]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
