"""Settings: the only module that reads the environment (prefix `SMS_`).

Built once at the edge (the Celery app, the CLI) and passed down explicitly; tests build
`Settings(...)` with keyword arguments.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every `SMS_*` variable; the README's configuration table documents each one."""

    model_config = SettingsConfigDict(env_prefix="SMS_", extra="ignore", secrets_dir=None)

    #: broker and result channel
    redis_url: str = "redis://localhost:6379/0"
    #: YAML or JSON config of connections and agents
    config_file: Path | None = None
    #: comma-separated Fernet keys, newest first, for `enc:` credentials
    encryption_keys: SecretStr | None = None
    #: let custom endpoints use loopback/private addresses and plain HTTP (tests, on-premise gateways)
    allow_private_endpoints: bool = False
    #: seconds a custom endpoint's DNS answer is kept (getaddrinfo reports no TTL), refreshed in
    #: the background after half of it
    custom_dns_ttl: float = Field(default=30.0, ge=0, le=3600)
    #: worker threads per process (the pool is `threads`: sends wait on the network, not the CPU)
    concurrency: int = Field(default=200, ge=1, le=2000)
    #: seconds one provider request may take (connect + response)
    provider_timeout: float = Field(default=5.0, gt=0, le=60)
    #: attempts per message, first one included, for retryable errors
    max_attempts: int = Field(default=4, ge=1, le=20)
    #: seconds before the first retry (the caller is waiting)
    retry_first_delay: float = Field(default=0.25, ge=0, le=5)
    #: the longest wait between two attempts
    retry_max_delay: float = Field(default=20.0, ge=0.1, le=120)
    #: seconds an unacknowledged message waits before Redis hands it to another worker
    visibility_timeout: int = Field(default=300, ge=10)
    #: seconds between sweeps that hand dead workers' messages back (worker/transport.py)
    restore_interval: int = Field(default=1, ge=1)
    #: seconds a worker's heartbeat lives in Redis; a worker silent for this long counts as dead
    heartbeat_ttl: float = Field(default=5.0, ge=1, le=300)
    #: seconds between heartbeats (a thread of its own, independent of busy task threads)
    heartbeat_interval: float = Field(default=1.0, gt=0, le=60)
    #: entries kept in the dead-letter list `sms:dead` (newest first)
    dead_letter_max: int = Field(default=10_000, ge=1)
    #: seconds the dead-letter list lives after its last entry
    dead_letter_ttl: int = Field(default=7 * 24 * 3600, ge=60)
    #: seconds an idempotency record (and so the first outcome) is kept
    idempotency_ttl: int = Field(default=24 * 3600, ge=60)
    #: seconds a sender holds its claim while calling the provider before another worker may take over
    claim_lease: float = Field(default=30.0, ge=1)
    #: seconds between checks of the config source for changes
    config_refresh: float = Field(default=2.0, ge=0.1)
    # -- config store (issue 4) ------------------------------------------------------------------
    #: where workers read connections and agents: `file` (SMS_CONFIG_FILE) or `redis` (the store
    #: that `midcall-sms config` manages, in SMS_REDIS_URL)
    config_source: Literal["file", "redis"] = "file"
    #: Celery task events (what Flower shows) for good; off (the default), a worker sends them only
    #: while a monitor asks (Flower's `enable_events` every 5 s; worker/task_events.py): each
    #: send then costs three Redis PUBLISHes
    task_events: bool = False
    #: seconds task events stay on after a monitor's last `enable_events` (task_events off)
    task_events_lease: float = Field(default=30.0, ge=1, le=3600)
    log_level: str = "INFO"
    #: `json`, `console`, or `auto` (console on a terminal, JSON otherwise)
    log_format: Literal["json", "console", "auto"] = "auto"

    # -- operations: the worker's /metrics, /healthz and /readyz endpoint (worker/health.py) --
    #: port of the worker's HTTP endpoint for /metrics, /healthz and /readyz; 0 turns it off
    metrics_port: int = Field(default=9808, ge=0, le=65535)
    #: address that endpoint listens on; containers set 0.0.0.0 so the kubelet and Prometheus reach it
    metrics_host: str = "127.0.0.1"
    #: seconds a queue-depth sample (LLEN of the queue) is reused by later scrapes
    queue_depth_interval: float = Field(default=5.0, ge=0.5, le=300)
    #: /healthz fails when the consumer loop has not ticked for this many seconds
    liveness_timeout: float = Field(default=60.0, ge=2, le=3600)

    # -- the HTTP service (`midcall-sms serve`): receipts, inbound messages, platforms, audit ------
    #: the base URL providers and platforms call (callback URLs are built from it, and Twilio's
    #: signatures cover it); unset: no callbacks are requested, receipts come from polling only
    public_url: str | None = None
    #: address and port `midcall-sms serve` listens on
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    #: seconds a voice platform's tool request (`/v1/tools/vapi`, `/v1/tools/retell`) waits for a
    #: text's outcome before answering "not confirmed yet" (within the platforms' own time limits)
    tool_timeout: float = Field(default=4.0, gt=0, le=15)
    #: comma-separated bearer tokens for the audit API; none set: it answers 401
    api_tokens: SecretStr | None = None
    #: audit records hold the message text (and full numbers) only when true
    audit_bodies: bool = False
    #: seconds after acceptance at which a message with no final receipt yet is looked up at its
    #: provider (comma-separated, e.g. "5,15,45"); empty: no status polling
    receipt_poll_schedule: str = "5,15,45"
    #: OpenTelemetry's own variables (worker/tracing.py), read here so that only this module reads
    #: the environment: traces are on when an exporter or an OTLP endpoint is named
    otel_sdk_disabled: bool = Field(default=False, validation_alias="OTEL_SDK_DISABLED")
    otel_traces_exporter: str | None = Field(default=None, validation_alias="OTEL_TRACES_EXPORTER")
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
    )

    @field_validator("receipt_poll_schedule")
    @classmethod
    def _check_schedule(cls, value: str) -> str:
        try:
            steps = [float(part) for part in value.split(",") if part.strip()]
        except ValueError:
            raise ValueError("must be comma-separated seconds, e.g. 5,15,45") from None
        if any(b <= a for a, b in itertools.pairwise(steps)) or any(s <= 0 or s > 3600 for s in steps):
            raise ValueError("must be increasing seconds between 0 and 3600, e.g. 5,15,45")
        return value

    def poll_schedule(self) -> list[float]:
        """`SMS_RECEIPT_POLL_SCHEDULE` as seconds after acceptance (empty: polling is off)."""
        return [float(part) for part in self.receipt_poll_schedule.split(",") if part.strip()]

    @model_validator(mode="after")
    def _heartbeat_fits_its_ttl(self) -> Settings:
        if self.heartbeat_interval * 2 > self.heartbeat_ttl:
            raise ValueError("SMS_HEARTBEAT_INTERVAL must be at most half of SMS_HEARTBEAT_TTL")
        return self

    # -- policies: opt-outs, caps (worker/hashing.py) ----------------------------------------------
    #: the key phone numbers are hashed with (HMAC-SHA256) in the opt-out list and the
    #: per-recipient caps; unset: a random key generated once in Redis (`sms:number-hash-key`)
    number_hash_key: SecretStr | None = None

    def fernet_keys(self) -> list[str]:
        if self.encryption_keys is None:
            return []
        return [k.strip() for k in self.encryption_keys.get_secret_value().split(",") if k.strip()]

    def bearer_tokens(self) -> list[str]:
        if self.api_tokens is None:
            return []
        return [t.strip() for t in self.api_tokens.get_secret_value().split(",") if t.strip()]
