"""What the config must know of each provider, as data: its name, credential fields, and options.

This module is neutral ground: it imports nothing of the worker, so `worker.config` validates a
connection against it without importing `worker.providers` (which imports `worker.config`), and
`worker.providers` builds its registry from it (`worker/providers/registry.py`: each spec's
`implementation` is the provider class, which says how to build, send, probe, verify and parse
callbacks, poll, and its error and receipt tables). Adding a provider is one spec here and one
module under `worker/providers/` (docs/architecture.md, "Adding a provider").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One provider as the config, the CLI and the registry see it (no behaviour, no imports)."""

    #: the name in configs, webhook URLs, events and metrics (`provider: twilio`)
    name: str
    #: "module:Class" of its `SmsProvider` subclass, imported by `worker/providers/registry.py`
    implementation: str
    #: one line for help texts and docs
    summary: str
    #: credential fields a connection must set (non-empty)
    required_credentials: tuple[str, ...] = ()
    #: credential fields a connection may set besides
    optional_credentials: tuple[str, ...] = ()
    #: sends to a URL of the user's: a connection needs `custom_api_url`, and an agent may name its
    #: own (`voice_tools.sms_mid_call.custom_api_url`) instead of a connection
    endpoint_url: bool = False
    #: signs callbacks with a key pair: a connection may carry `webhook_public_key`
    webhook_public_key: bool = False

    @property
    def credential_fields(self) -> tuple[str, ...]:
        return (*self.required_credentials, *self.optional_credentials)

    def credentials_help(self) -> str:
        """`twilio: account_sid, auth_token` (optional fields in brackets)."""
        fields = [*self.required_credentials, *(f"[{name}]" for name in self.optional_credentials)]
        return f"{self.name}: {', '.join(fields) or 'none'}"


SPECS: dict[str, ProviderSpec] = {
    spec.name: spec
    for spec in (
        ProviderSpec(
            name="twilio",
            implementation="worker.providers.twilio:TwilioProvider",
            summary="Twilio Programmable Messaging (the official SDK)",
            required_credentials=("account_sid", "auth_token"),
        ),
        ProviderSpec(
            name="plivo",
            implementation="worker.providers.plivo:PlivoProvider",
            summary="Plivo Message API",
            required_credentials=("auth_id", "auth_token"),
        ),
        ProviderSpec(
            name="telnyx",
            implementation="worker.providers.telnyx:TelnyxProvider",
            summary="Telnyx Messaging API v2",
            required_credentials=("api_key",),
            optional_credentials=("messaging_profile_id",),
            webhook_public_key=True,
        ),
        ProviderSpec(
            name="custom",
            implementation="worker.providers.custom:CustomProvider",
            summary="a custom HTTPS endpoint of yours (POST {to, message})",
            endpoint_url=True,
        ),
        ProviderSpec(
            name="sandbox",
            implementation="worker.providers.sandbox:SandboxProvider",
            summary="the sandbox: records texts in Redis, magic numbers for failures and receipts",
        ),
    )
}


def spec_of(name: str) -> ProviderSpec:
    """The spec of a provider name; `KeyError` for an unknown one."""
    return SPECS[name]


def names() -> str:
    """The provider names, for messages and help: "twilio, plivo, telnyx, custom, sandbox"."""
    return ", ".join(SPECS)
