"""`midcall-sms dead list|requeue|purge`: the dead-letter list `sms:dead` (worker/deadletter.py).

`list` prints summaries only — reason, size, hash, task name and id — never an entry's bytes,
which may hold phone numbers and message texts.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

import redis

from worker import deadletter, redis_client
from worker.settings import Settings
from worker.transport import safe_text

if TYPE_CHECKING:
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]


def _client(settings: Settings) -> redis.Redis:
    return redis_client.connect(settings, socket_connect_timeout=2.0, socket_timeout=10.0)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    client = _client(settings)
    try:
        total = deadletter.count(client)
        entries = deadletter.summaries(client, args.limit)
    finally:
        client.close()
    for entry in entries:
        for field in ("task", "id", "detail"):
            if isinstance(entry.get(field), str):
                entry[field] = safe_text(entry[field], 100)
    if args.json:
        print(json.dumps({"total": total, "entries": entries}, indent=2))
        return 0
    print(f"{total} dead-lettered entr{'y' if total == 1 else 'ies'} in sms:dead (newest first)")
    for e in entries:
        task = f" task={e['task']}" if e["task"] else ""
        ident = f" id={e['id']}" if e["id"] else ""
        print(
            f"  [{e['index']}] {e['at']}  {e['reason']}: {e['detail']}  "
            f"{e['size']} bytes sha256={e['sha256']}{task}{ident}"
        )
    return 0


def _requeue(args: argparse.Namespace, settings: Settings) -> int:
    client = _client(settings)
    try:
        moved = deadletter.requeue(client, None if args.all else args.count)
    finally:
        client.close()
    print(f"requeued {moved} entr{'y' if moved == 1 else 'ies'} (oldest first)")
    return 0


def _purge(args: argparse.Namespace, settings: Settings) -> int:
    client = _client(settings)
    try:
        removed = deadletter.purge(client)
    finally:
        client.close()
    print(f"purged {removed} entr{'y' if removed == 1 else 'ies'}")
    return 0


def register(commands: Subcommands) -> None:
    dead = commands.add_parser(
        "dead", help="queue entries no worker could run (the dead-letter list sms:dead)"
    ).add_subparsers(dest="dead_command", required=True)
    listing = dead.add_parser("list", help="summaries of the newest entries (never their contents)")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=_list)
    requeue = dead.add_parser("requeue", help="put the oldest entries back on their queue")
    which = requeue.add_mutually_exclusive_group(required=True)
    which.add_argument("--count", type=int, help="how many")
    which.add_argument("--all", action="store_true")
    requeue.set_defaults(run=_requeue)
    dead.add_parser("purge", help="delete every entry").set_defaults(run=_purge)
