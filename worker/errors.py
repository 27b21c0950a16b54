"""Errors of the worker.

```
SmsError
├── SendError       a send ended (or must be retried) with a taxonomy code; carries what the event needs
└── ConfigError     the config (file, store, CLI input) is invalid; the message names the field
```
Providers raise `SendError` only, through their one error table; nothing else crosses the boundary.
"""

from __future__ import annotations

from producers.contract import RETRYABLE_CODES, ErrorCode, ErrorInfo


class SmsError(Exception):
    """Root of the worker's errors."""


class SendError(SmsError):
    """Raised when an SMS cannot be sent now (retryable) or at all (permanent)."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        provider_code: str | int | None = None,
        retry_after: float | None = None,
        ambiguous: bool = False,
        cause: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.provider_code = None if provider_code is None else str(provider_code)
        #: seconds the provider asked us to wait (Retry-After, x-ratelimit-reset)
        self.retry_after = retry_after
        #: the request may have reached the provider (a read timeout, a dropped connection)
        self.ambiguous = ambiguous
        #: which cause of `code` this is, when it has its own spoken sentence (`ErrorInfo.cause`)
        self.cause = cause

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES

    def info(self) -> ErrorInfo:
        return ErrorInfo(
            code=self.code,
            provider_code=self.provider_code,
            message=self.message,
            retryable=self.retryable,
            cause=self.cause,
        )

    def __repr__(self) -> str:
        return f"SendError({self.code.value!r}, {self.message!r}, provider_code={self.provider_code!r})"


class ConfigError(SmsError):
    """Raised when config is invalid; the message names the agent or connection and the field."""
