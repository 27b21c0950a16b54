"""Connections and agents as stored in Redis: JSON documents whose secrets are `enc:` tokens.

Three forms of one item, and the only functions that convert between them:
- the model (`Connection`, `Agent`): validated, secrets as `SecretStr`;
- plain: a dict with secrets revealed — in memory only, to diff and merge-patch before a write;
- sealed: a dict with every secret encrypted — what Redis holds and `export` prints.

Secrets live in known mappings (`CONNECTION_SECRETS`, `AGENT_SECRETS`). A `SecretStr` outside
them would fail `json.dumps` loudly rather than be stored in clear; a test keeps the tables in
step with the models.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from producers.contract import validation_problems
from worker.config.crypto import PREFIX, Crypto
from worker.config.models import Agent, Connection
from worker.errors import ConfigError

Path = tuple[str, ...]

#: mappings of a connection whose every value is a secret
CONNECTION_SECRETS: tuple[Path, ...] = (("credentials",), ("custom_api_headers",))
#: mappings of an agent body whose every value is a secret
AGENT_SECRETS: tuple[Path, ...] = (
    ("voice_tools", "sms_mid_call", "custom_api_headers"),
    ("voice_tools", "sms_mid_call", "tool_secrets"),
)

Document = dict[str, Any]


def mask(secret: str) -> str:
    """`****` plus the last four characters of a long secret (enough to tell two tokens apart)."""
    return "****" + secret[-4:] if len(secret) >= 16 else "****"


def _dump(model: BaseModel, paths: Sequence[Path], reveal: Callable[[str], str], *, full: bool) -> Document:
    """The model as a dict (the fields given, or all with `full`), each secret passed through `reveal`."""
    data: Document = model.model_dump(mode="python", exclude_unset=not full)
    for path in paths:
        mapping = _mapping_at(data, path)
        if mapping is not None:
            for name, value in mapping.items():
                mapping[name] = reveal(value.get_secret_value() if isinstance(value, SecretStr) else value)
    return data


def _mapping_at(data: Document, path: Path) -> dict[str, Any] | None:
    node: Any = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, dict) else None


def _paths(model: Connection | Agent) -> tuple[Path, ...]:
    return CONNECTION_SECRETS if isinstance(model, Connection) else AGENT_SECRETS


def plain(model: Connection | Agent) -> Document:
    """The fields given, secrets in clear: the form merge patches and diffs work on (never stored)."""
    return _dump(model, _paths(model), lambda secret: secret, full=False)


def seal(model: Connection | Agent, crypto: Crypto) -> Document:
    """The fields given, each secret encrypted with the newest key: the stored form."""
    return _dump(model, _paths(model), crypto.encrypt, full=False)


def masked(model: Connection | Agent) -> Document:
    """Every field, defaults included, with secrets masked: what `show` prints."""
    return _dump(model, _paths(model), mask, full=True)


def encode(document: Document) -> str:
    """A sealed document as stored: compact JSON, fields in the model's order (as `export` shows them)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def open_secrets(
    document: Document, paths: Sequence[Path], crypto: Crypto, *, subject: str, sealed_only: bool
) -> Document:
    """A copy of `document` with the `enc:` values at `paths` decrypted.

    `sealed_only` (documents read from Redis) refuses a secret stored in clear; input from a user
    may give either a plain value or an `enc:` token.
    """
    opened = copy.deepcopy(document)
    for path in paths:
        mapping = _mapping_at(opened, path)
        if mapping is None:
            continue
        for name, value in mapping.items():
            where = f"{subject}: {'.'.join(path)}.{name}"
            if isinstance(value, str) and value.startswith(PREFIX):
                mapping[name] = crypto.decrypt(value, where=where)
            elif sealed_only:
                raise ConfigError(f"{where}: stored without encryption; re-save it with the CLI")
    return opened


def rotate_secrets(document: Document, paths: Sequence[Path], crypto: Crypto, *, subject: str) -> int:
    """Re-encrypt, in place, every secret that the newest key alone cannot open; returns how many."""
    rotated = 0
    for path in paths:
        mapping = _mapping_at(document, path)
        for name, value in (mapping or {}).items():
            if isinstance(value, str) and value.startswith(PREFIX) and not crypto.is_current(value):
                assert mapping is not None
                mapping[name] = crypto.rotate(value, where=f"{subject}: {'.'.join(path)}.{name}")
                rotated += 1
    return rotated


def load_document(raw: bytes | str, *, subject: str) -> Document:
    try:
        document = json.loads(raw)
    except ValueError:
        raise ConfigError(f"{subject}: the stored value is not valid JSON") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{subject}: the stored value is not a JSON object")
    return document


def open_connection(label: str, raw: bytes | str, crypto: Crypto) -> Connection:
    """A stored connection, decrypted and validated; errors name the label and the field."""
    subject = f"connection {label!r}"
    document = open_secrets(
        load_document(raw, subject=subject), CONNECTION_SECRETS, crypto, subject=subject, sealed_only=True
    )
    try:
        connection = Connection.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"{subject}: {validation_problems(exc)}") from None
    if connection.label != label:
        raise ConfigError(f"{subject}: stored under another label ({connection.label!r})")
    return connection


def open_agent(agent_id: str, raw: bytes | str, crypto: Crypto) -> Agent:
    """A stored agent body, decrypted and validated; errors name the agent and the field."""
    subject = f"agent {agent_id!r}"
    document = open_secrets(
        load_document(raw, subject=subject), AGENT_SECRETS, crypto, subject=subject, sealed_only=True
    )
    try:
        return Agent.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"{subject}: {validation_problems(exc)}") from None
