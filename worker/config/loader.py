"""Loading config: parse YAML or JSON, resolve `${VAR}` and `enc:` values, validate, explain errors."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from worker.config.crypto import PREFIX, Crypto
from worker.config.models import SmsConfig
from worker.errors import ConfigError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_text(text: str, *, source: str) -> Any:
    """YAML or JSON (JSON is read as JSON first, for exact error positions)."""
    stripped = text.lstrip()
    try:
        if stripped.startswith(("{", "[")):
            return json.loads(text)
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        if isinstance(exc, json.JSONDecodeError):
            where = f" at line {exc.lineno} column {exc.colno}"
        raise ConfigError(f"{source}: not valid YAML or JSON{where}") from None


def resolve(value: Any, *, crypto: Crypto, env: Mapping[str, str], path: str = "") -> Any:
    """`value` with `${VAR}` read from `env` and `enc:` values decrypted, recursively."""
    if isinstance(value, dict):
        return {k: resolve(v, crypto=crypto, env=env, path=_join(path, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, crypto=crypto, env=env, path=f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    text = expand_vars(value, env=env, where=_describe_path(path))
    if text.startswith(PREFIX):
        text = crypto.decrypt(text, where=_describe_path(path))
    return text


def expand_vars(value: str, *, env: Mapping[str, str], where: str) -> str:
    """`value` with each `${VAR}` read from `env`; `where` names the field when one is not set."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return env[name]

    return _VAR.sub(substitute, value)


#: The agent fields where `${VAR}` and `enc:` are resolved; templates and the platform's own
#: fields (prompts…) are left alone, so `"Total: ${amount}"` stays literal text.
_AGENT_SECRET_FIELDS = ("custom_api_url", "custom_api_headers", "tool_secrets")


def resolve_secrets(data: dict[str, Any], *, crypto: Crypto, env: Mapping[str, str]) -> dict[str, Any]:
    """`data` with `${VAR}` and `enc:` resolved in connections and in agents' endpoint fields only."""
    resolved = dict(data)
    connections = data.get("connections")
    if isinstance(connections, list):
        resolved["connections"] = [
            resolve(c, crypto=crypto, env=env, path=_connection_name(c, i)) for i, c in enumerate(connections)
        ]
    agents = data.get("agents")
    if isinstance(agents, dict):
        resolved["agents"] = {}
        for agent_id, agent in agents.items():
            sms = agent.get("voice_tools", {}).get("sms_mid_call") if isinstance(agent, dict) else None
            if isinstance(sms, dict):
                path = f"agent {agent_id!r}: voice_tools.sms_mid_call"
                sms = {
                    k: resolve(v, crypto=crypto, env=env, path=_join(path, k))
                    if k in _AGENT_SECRET_FIELDS
                    else v
                    for k, v in sms.items()
                }
                agent = {**agent, "voice_tools": {**agent["voice_tools"], "sms_mid_call": sms}}
            resolved["agents"][agent_id] = agent
    return resolved


def _connection_name(connection: Any, index: int) -> str:
    label = connection.get("label") if isinstance(connection, dict) else None
    return f"connection {label!r}: " if isinstance(label, str) else f"connections[{index}]"


def _join(path: str, key: str) -> str:
    if not path:
        return key
    return path + key if path.endswith(": ") else f"{path}.{key}"


def _describe_path(path: str) -> str:
    return path or "config"


def describe(exc: ValidationError, data: Any) -> str:
    """A validation error as lines that name the agent or connection and the field — never the value."""
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        subject = ""
        if loc[:1] == ["connections"] and len(loc) > 1 and isinstance(loc[1], int):
            label = _label_at(data, loc[1])
            subject = f"connection {label!r}" if label else f"connections[{loc[1]}]"
            loc = loc[2:]
        elif loc[:1] == ["agents"] and len(loc) > 1:
            subject = f"agent {loc[1]!r}"
            loc = loc[2:]
        field = ".".join(str(p) for p in loc)
        message = err["msg"].removeprefix("Value error, ")
        text = f"{field}: {message}" if field else message
        lines.append(f"{subject}: {text}" if subject else text)
    return "; ".join(lines)


def _label_at(data: Any, index: int) -> str | None:
    try:
        label = data["connections"][index]["label"]
    except (KeyError, IndexError, TypeError):
        return None
    return label if isinstance(label, str) else None


def validate(
    data: Any, *, crypto: Crypto, env: Mapping[str, str] | None = None, source: str = "config"
) -> SmsConfig:
    """A validated `SmsConfig` from parsed data; raises `ConfigError` naming the field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with 'connections' and 'agents'")
    resolved = resolve_secrets(data, crypto=crypto, env=os.environ if env is None else env)
    try:
        return SmsConfig.model_validate(resolved)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe(exc, resolved)}") from None


def load_file(path: Path, *, crypto: Crypto, env: Mapping[str, str] | None = None) -> SmsConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    return validate(parse_text(text, source=str(path)), crypto=crypto, env=env, source=str(path))
