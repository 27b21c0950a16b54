"""The config model: labelled connections and agents in the platform's `voice_tools.sms_mid_call` shape.

Validation happens here, once, at load: a bad config is refused whole with a message that names
the agent or connection and the field (see `worker.config.loader.describe`).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Literal

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from worker import templates
from worker.provider_specs import SPECS, names
from worker.recipients import InvalidNumber, normalize


def _known_provider(value: str) -> str:
    # The value is not echoed: a misplaced secret must not end up in the refusal.
    if value not in SPECS:
        raise ValueError(f"not a provider name (one of: {names()})")
    return value


#: A provider name of the registry's specs (`worker/provider_specs.py`).
ProviderName = Annotated[str, AfterValidator(_known_provider)]


def _e164(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalize(value)
    except InvalidNumber as exc:
        raise ValueError(f"not an E.164 phone number ({exc})") from None


_NOT_ID = re.compile(r"[^a-z0-9]+")
CONNECTION_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"


def connection_id_of(label: str) -> str:
    """The id a connection gets from its label: lowercased, each run of other characters turned
    into one `-` ("Twilio - Support" -> "twilio-support")."""
    return _NOT_ID.sub("-", label.lower()).strip("-")[:64].strip("-") or "connection"


class SenderRate(BaseModel):
    """How fast one sending number may send: a rate and a burst (GCRA, across all workers)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: messages (segments) per second
    messages_per_second: float = Field(gt=0, le=10_000)
    #: how many may leave at once before the rate applies (default: one second's worth, at least 1)
    burst: int | None = Field(default=None, ge=1, le=100_000)


class Connection(BaseModel):
    """One provider account, referred to by its label."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = Field(min_length=1, max_length=200)
    #: the connection's part of its webhook URLs (`/v1/webhooks/{provider}/{id}/status`); never a
    #: secret. Default: derived from the label (`connection_id_of`).
    id: str | None = Field(default=None, pattern=CONNECTION_ID_PATTERN)
    provider: ProviderName
    default: bool = False
    from_number: str | None = None
    credentials: dict[str, SecretStr] = Field(default_factory=dict)
    api_base_url: str | None = None
    #: custom provider: where to POST `{"to", "message"}`, and with which headers
    custom_api_url: str | None = None
    custom_api_headers: dict[str, SecretStr] = Field(default_factory=dict)
    #: who a STOP opts out from: the number it was sent to (`number`), or every number of this
    #: connection (`connection`)
    opt_out_scope: Literal["number", "connection"] = "number"
    #: the sending numbers' rate (default: the provider's figure for the kind of number, see
    #: README "Sender rate limits"); `burst` how many may leave at once
    messages_per_second: float | None = Field(default=None, gt=0, le=10_000)
    burst: int | None = Field(default=None, ge=1, le=100_000)
    #: per sending number (E.164): its own rate and burst
    number_rates: dict[str, SenderRate] = Field(default_factory=dict)
    #: Telnyx: the account's webhook public key (base64 of 32 raw Ed25519 bytes, Mission Control →
    #: Keys), which verifies `telnyx-signature-ed25519` on receipts and inbound messages. Public, not a
    #: secret; without it the service refuses this connection's Telnyx callbacks (403).
    webhook_public_key: str | None = None

    _check_from = field_validator("from_number")(_e164)

    @field_validator("number_rates")
    @classmethod
    def _check_number_rates(cls, value: dict[str, SenderRate]) -> dict[str, SenderRate]:
        checked: dict[str, SenderRate] = {}
        for number, rate in value.items():
            try:
                checked[normalize(number)] = rate
            except InvalidNumber as exc:
                raise ValueError(f"{number!r}: not an E.164 phone number ({exc})") from None
        return checked

    @field_validator("webhook_public_key")
    @classmethod
    def _check_public_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not base64 (the Ed25519 public key from Telnyx's portal)") from None
        if len(raw) != 32:
            raise ValueError(f"an Ed25519 public key is 32 bytes, this one decodes to {len(raw)}")
        return value

    @model_validator(mode="after")
    def _check_credentials(self) -> Connection:
        spec = SPECS[self.provider]
        missing = [
            name
            for name in spec.required_credentials
            if not self.credentials.get(name, SecretStr("")).get_secret_value()
        ]
        if missing:
            raise ValueError(f"credentials: missing {', '.join(missing)} for provider {self.provider}")
        unknown = sorted(set(self.credentials) - set(spec.credential_fields))
        if unknown:
            raise ValueError(
                f"credentials: unknown field(s) {', '.join(unknown)} for provider {self.provider}"
            )
        if spec.endpoint_url and not self.custom_api_url:
            raise ValueError(f"custom_api_url: required for provider {self.provider}")
        if self.webhook_public_key is not None and not spec.webhook_public_key:
            signers = ", ".join(s.name for s in SPECS.values() if s.webhook_public_key)
            raise ValueError(
                f"webhook_public_key: only {signers} connections sign callbacks with a public key"
            )
        return self

    def secret(self, name: str) -> str:
        return self.credentials[name].get_secret_value()

    @property
    def connection_id(self) -> str:
        """The id in this connection's webhook URLs: `id`, or one derived from the label."""
        return self.id or connection_id_of(self.label)


class RecipientCap(BaseModel):
    """At most `count` texts to one recipient within `window_seconds`, across all of an agent's calls."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(ge=0, le=100_000)
    window_seconds: int = Field(ge=1, le=30 * 24 * 3600)


#: The default per-recipient cap: 10 texts per hour to one number from one agent (a looping agent
#: or an abuser calling again and again cannot flood a phone; a real conversation never gets near).
DEFAULT_RECIPIENT_CAP = RecipientCap(count=10, window_seconds=3600)
#: Regions phonenumbers knows (ISO 3166 alpha-2 codes it has metadata for).
SUPPORTED_REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)


class SmsMidCall(BaseModel):
    """An agent's `voice_tools.sms_mid_call`: the platform's fields plus our extensions."""

    # The platform's agent JSON carries fields we do not use; they are accepted and ignored.
    model_config = ConfigDict(extra="ignore", frozen=True)

    enabled: bool = False
    provider: ProviderName | None = None
    from_number: str | None = None
    templates: dict[str, str] = Field(default_factory=dict)
    custom_api_url: str | None = None
    custom_api_headers: dict[str, SecretStr] = Field(default_factory=dict)
    # our extensions
    connection: str | None = Field(default=None, description="label of the connection to send through")
    fallback_connection: str | None = None
    recipient_policy: Literal["caller_only", "any"] = "caller_only"
    allowed_countries: list[str] | None = None
    max_per_call: int = Field(default=5, ge=0, le=1000)
    #: texts to one recipient across all of this agent's calls; null: no cap
    max_per_recipient: RecipientCap | None = DEFAULT_RECIPIENT_CAP
    #: replace typographic characters (curly quotes, dashes, …) with GSM-7 ones before sending
    smart_encoding: bool = False
    allow_free_text: bool = True
    validity_seconds: int | None = Field(default=None, ge=1, le=36000)
    #: let a job choose another connection label or sending number than the agent's
    allow_overrides: bool = False
    #: voice platforms' tool requests (`/v1/tools/{platform}`): per platform, the secret that
    #: authenticates them (Vapi: the server secret it sends; Retell: the API key that signs)
    tool_secrets: dict[Literal["vapi", "retell"], SecretStr] = Field(default_factory=dict)
    #: the header Vapi sends the server secret in (the agent's server URL settings)
    vapi_secret_header: str = Field(default="x-vapi-secret", min_length=1, max_length=100)
    #: the platform's own ids of this agent (Vapi assistant ids, Retell agent ids), for tool
    #: requests to `/v1/tools/{platform}` without the agent id in the path
    platform_ids: dict[Literal["vapi", "retell"], list[str]] = Field(default_factory=dict)

    _check_from = field_validator("from_number")(_e164)

    @field_validator("templates")
    @classmethod
    def _check_templates(cls, value: dict[str, str]) -> dict[str, str]:
        for name, source in value.items():
            try:
                templates.parse(source)
            except templates.TemplateError as exc:
                raise ValueError(f"template {name!r}: {exc}") from None
        return value

    @field_validator("allowed_countries")
    @classmethod
    def _check_countries(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        bad = [c for c in value if c.upper() not in SUPPORTED_REGIONS]
        if bad:
            raise ValueError(f"not country codes of a region (ISO 3166 alpha-2): {', '.join(bad)}")
        return [c.upper() for c in value]


class VoiceTools(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    sms_mid_call: SmsMidCall = Field(default_factory=SmsMidCall)


class Agent(BaseModel):
    """One agent's body as the platform stores it; only `voice_tools.sms_mid_call` is read."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    voice_tools: VoiceTools = Field(default_factory=VoiceTools)

    @property
    def sms(self) -> SmsMidCall:
        return self.voice_tools.sms_mid_call


class SmsConfig(BaseModel):
    """Everything the worker needs to resolve a job: connections by label and agents by id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connections: list[Connection] = Field(default_factory=list)
    agents: dict[str, Agent] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_references(self) -> SmsConfig:
        labels = [c.label for c in self.connections]
        duplicated = sorted({label for label in labels if labels.count(label) > 1})
        if duplicated:
            raise ValueError(f"connections: duplicate label(s) {', '.join(map(repr, duplicated))}")
        ids = [c.connection_id for c in self.connections]
        clashing = sorted({i for i in ids if ids.count(i) > 1})
        if clashing:
            owners = [c.label for c in self.connections if c.connection_id in clashing]
            raise ValueError(
                f"connections: {', '.join(map(repr, owners))} share the webhook id "
                f"{', '.join(map(repr, clashing))}; give one of them its own `id`"
            )
        for provider in SPECS:
            defaults = [c.label for c in self.connections if c.provider == provider and c.default]
            if len(defaults) > 1:
                raise ValueError(f"connections: more than one default for provider {provider}: {defaults}")
        known = set(labels)
        for agent_id, agent in self.agents.items():
            for field in ("connection", "fallback_connection"):
                label = getattr(agent.sms, field)
                if label is not None and label not in known:
                    raise ValueError(
                        f"agent {agent_id!r}: voice_tools.sms_mid_call.{field}: unknown connection {label!r}"
                    )
        return self

    def connection(self, label: str) -> Connection | None:
        return next((c for c in self.connections if c.label == label), None)

    def connection_by_id(self, provider: str, connection_id: str) -> Connection | None:
        """The connection a webhook URL names (`/v1/webhooks/{provider}/{connection_id}/...`)."""
        return next(
            (c for c in self.connections if c.provider == provider and c.connection_id == connection_id), None
        )

    def default_connection(self, provider: str) -> Connection | None:
        """The provider's connection marked `default`, or its only connection."""
        of_provider = [c for c in self.connections if c.provider == provider]
        marked = [c for c in of_provider if c.default]
        if marked:
            return marked[0]
        return of_provider[0] if len(of_provider) == 1 else None
