"""`producers` stays importable without the voice-agent frameworks (the `[livekit]`/`[pipecat]` extras)."""

from __future__ import annotations

import subprocess
import sys

BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("livekit", "pipecat", "worker", "celery"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import producers, producers.tools, producers.integrations, producers.integrations.follow
print("ok")
"""


def test_producers_import_without_frameworks_or_worker() -> None:
    """With livekit, pipecat, worker and celery unimportable, `producers`, its tools and the
    framework-free part of the integrations still import."""
    out = subprocess.run([sys.executable, "-c", BLOCK], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
