"""The provider registry: each provider name's class, loaded from its spec (`worker/provider_specs.py`).

Everything that depends on which provider a connection uses asks here, by name, and then asks
the class: the pool (`build`), the plan (`limits`), the sender rates (`sender_rates`), the status
poll (`polls`, `fetch_status`), the HTTP service's webhooks (`signs_callbacks`, `verify_callback`,
`receipt`, `inbound_message`) and the CLI's account requests (`worker/providers/probe.py`). No
module outside a provider's own branches on provider names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import MappingProxyType

from worker.provider_specs import SPECS, ProviderSpec
from worker.providers.base import SmsProvider
from worker.receipts import ReceiptUpdate


def _load(spec: ProviderSpec) -> type[SmsProvider]:
    module_name, _, class_name = spec.implementation.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, SmsProvider)):
        raise TypeError(f"{spec.implementation} is not an SmsProvider")
    if cls.spec is not spec or cls.name != spec.name:
        raise TypeError(f"{spec.implementation} declares another spec than {spec.name!r}")
    return cls


#: Each provider name's class, in the specs' order.
PROVIDER_CLASSES: Mapping[str, type[SmsProvider]] = MappingProxyType(
    {name: _load(spec) for name, spec in SPECS.items()}
)


def provider_class(name: str) -> type[SmsProvider]:
    """The class of a provider name; `KeyError` for an unknown one."""
    return PROVIDER_CLASSES[name]


def has_receipts(cls: type[SmsProvider]) -> bool:
    """Whether the provider's messages get delivery receipts (callbacks and/or status polls)."""
    return cls.callbacks or cls.polls


#: Providers whose messages have delivery receipts (callbacks and/or status polls).
RECEIPT_PROVIDERS = frozenset(name for name, cls in PROVIDER_CLASSES.items() if has_receipts(cls))
#: Providers whose signed callbacks the HTTP service takes (`/v1/webhooks/{provider}/…`).
CALLBACK_PROVIDERS: Mapping[str, type[SmsProvider]] = MappingProxyType(
    {name: cls for name, cls in PROVIDER_CLASSES.items() if cls.signs_callbacks}
)


def receipt_parser(provider: str) -> Callable[..., ReceiptUpdate]:
    """`<Provider>.receipt` for a provider name: raw callback fields -> `ReceiptUpdate`
    (`KeyError` for a provider without receipts)."""
    if provider not in RECEIPT_PROVIDERS:
        raise KeyError(provider)
    return PROVIDER_CLASSES[provider].receipt
