"""Where the worker reads its config from, cached per process and refreshed when it changes.

The file source checks the file's modification time at most every `config_refresh` seconds; a
send never reads the file. A change that fails validation is logged and ignored: the last good
config stays in use, so a typo cannot take a running fleet down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import structlog

from worker.config.crypto import Crypto
from worker.config.loader import load_file
from worker.config.models import SmsConfig
from worker.errors import ConfigError

log = structlog.get_logger("worker.config")


class ConfigSource(Protocol):
    def get(self) -> SmsConfig: ...


class StaticConfigSource:
    """A fixed config (tests, embedding)."""

    def __init__(self, config: SmsConfig) -> None:
        self._config = config

    def get(self) -> SmsConfig:
        return self._config


class FileConfigSource:
    """`SMS_CONFIG_FILE`, loaded once and reloaded when its modification time changes."""

    def __init__(
        self,
        path: Path | None,
        *,
        crypto: Crypto,
        refresh: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._crypto = crypto
        self._refresh = refresh
        self._clock = clock
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._next_check = 0.0
        self._config = SmsConfig()
        if path is None:
            log.warning("config.none", detail="SMS_CONFIG_FILE is not set: every job fails with sms_disabled")
        else:
            self._config = load_file(path, crypto=crypto)  # a bad file at start-up is fatal
            self._mtime = path.stat().st_mtime

    def get(self) -> SmsConfig:
        if self._path is not None and self._clock() >= self._next_check:
            self._maybe_reload(self._path)
        return self._config

    def _maybe_reload(self, path: Path) -> None:
        with self._lock:
            if self._clock() < self._next_check:
                return
            self._next_check = self._clock() + self._refresh
            try:
                mtime = path.stat().st_mtime
            except OSError:
                return
            if mtime == self._mtime:
                return
            try:
                self._config = load_file(path, crypto=self._crypto)
                log.info("config.reloaded", path=str(path))
            except ConfigError as exc:
                log.error("config.reload_failed", path=str(path), error=str(exc))
            self._mtime = mtime
