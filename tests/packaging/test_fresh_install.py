"""`pip install midcall-sms` (no extras) in a fresh virtualenv: only the producer's dependencies.

A live-call process imports `producers`; the base install must bring redis (with hiredis) and
pydantic and nothing of the worker side (Celery, the provider SDKs, cryptography, Starlette, …).
The package is built from a copy of the sources (so the work tree stays clean) and installed by
pip's real resolver from the configured index, then a send is enqueued from the fresh interpreter.
Measured: about 18 s on a quiet machine (build in an isolated environment + resolve + install).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
#: What the base install may hold: the package, its two dependencies and theirs, and the venv's own.
ALLOWED = {
    "midcall-sms",
    "redis",
    "hiredis",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-extensions",
    "typing-inspection",
    "async-timeout",  # redis-py's dependency on Python < 3.11.3
    "pip",
    "setuptools",
}
#: The worker side, each of which must be absent.
WORKER_SIDE = (
    "celery",
    "kombu",
    "twilio",
    "cryptography",
    "starlette",
    "uvicorn",
    "httpx",
    "h11",
    "pyyaml",
    "structlog",
    "phonenumbers",
    "prometheus-client",
    "pydantic-settings",
    "requests",
)

PRODUCER = """
import asyncio, json, sys
from producers import CallContext, SmsClient

async def main() -> dict:
    async with SmsClient.from_url(sys.argv[1]) as sms:
        result = await sms.send(
            agent_id="agent_fresh",
            call=CallContext(call_id="CA-fresh", direction="inbound",
                             from_number="+14155551234", to_number="+14155550000"),
            message="hello from a fresh venv",
            timeout=0.2,
        )
    modules = sorted({m.split(".")[0] for m in sys.modules})
    return {"status": result.status, "job_id": result.job_id, "modules": modules}

print(json.dumps(asyncio.run(main())))
"""


def _normalized(name: str) -> str:
    return name.lower().replace("_", "-")


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_the_base_install_brings_only_redis_and_pydantic_and_producers_work(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    """A fresh virtualenv with `pip install <the package>` holds only the producer's dependencies,
    none of the worker side, and `producers` enqueues a send there (pending: no worker runs)."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("producers", "worker"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(source)],
        check=True,
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - started
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"], check=True, capture_output=True, text=True
    )
    installed = {_normalized(p["name"]): p["version"] for p in json.loads(listed.stdout)}
    print(
        f"fresh venv: installed in {seconds:.1f} s: "
        + ", ".join(f"{n}=={v}" for n, v in sorted(installed.items()))
    )
    assert set(installed) <= ALLOWED, f"unexpected: {sorted(set(installed) - ALLOWED)}"
    assert {"midcall-sms", "redis", "hiredis", "pydantic"} <= set(installed)
    assert not [name for name in WORKER_SIDE if name in installed]

    ran = subprocess.run(
        [str(python), "-c", PRODUCER, redis_url], check=True, capture_output=True, text=True, cwd=tmp_path
    )
    answer = json.loads(ran.stdout)
    assert answer["status"] == "pending"
    # The job is queued for a worker (other tests' entries may share the list: count this one's).
    queued = [entry for entry in redis_client.lrange("sms", 0, -1) if answer["job_id"].encode() in entry]
    assert len(queued) == 1
    assert "producers" in answer["modules"]
    assert not {"worker", "celery", "kombu", "twilio", "httpx", "starlette"} & set(answer["modules"])
