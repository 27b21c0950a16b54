"""midcall-sms worker: the Celery app and everything that sends.

`celery -A worker worker` finds the app through the module attribute `app`, which is built
lazily so that importing a submodule (templates, providers, the CLI) does not build a Celery app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    app: Celery

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from worker.app import app

        return app
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
