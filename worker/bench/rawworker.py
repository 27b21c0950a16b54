"""The floor's worker: the least a Redis job queue can do per job — `BRPOP` a job, `LPUSH` its reply.

`python -m worker.bench.rawworker redis://127.0.0.1:6379/0` serves until SIGTERM. A job is
`<reply key>`; the reply is pushed onto that key. Nothing is parsed, validated or stored.
"""

from __future__ import annotations

import sys

import redis

JOBS = "bench:raw:jobs"


def serve(url: str) -> None:
    client = redis.Redis.from_url(url)
    while True:
        popped = client.brpop([JOBS], timeout=1)
        if popped is not None:
            client.lpush(popped[1], b"done")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m worker.bench.rawworker REDIS_URL", file=sys.stderr)
        return 2
    serve(argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
