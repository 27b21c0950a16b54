"""The Redis config store: labelled connections and agents, secrets encrypted, every write atomic.

Every key of the store is named here:

| key                      | type   | holds                                                          |
|--------------------------|--------|----------------------------------------------------------------|
| `sms:config:version`     | string | a counter INCRed by every write; what workers poll             |
| `sms:config:connections` | hash   | label → sealed connection JSON (secrets are `enc:` tokens)     |
| `sms:config:agents`      | hash   | agent id → sealed agent body JSON                              |
| `sms:config:changes`     | zset   | `c:<label>` / `a:<agent id>` → version of its last change      |

A write WATCHes the version, reads the whole config, applies its edit, validates the whole result
(a refusal names the item and the field, and nothing is written), then writes the changed items,
their change entries and the next version in one MULTI/EXEC. A concurrent write makes the EXEC
fail and the write starts over on the newer config.

A removed item keeps its member in `changes` (a tombstone), so that a worker learns of the removal.
Workers read with one script call (`changes_since`): just the version when nothing changed, else
the items changed since the version they hold.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from pydantic import ValidationError
from redis.client import Pipeline

from producers.contract import as_text, validation_problems
from worker.config import sealed
from worker.config.crypto import Crypto
from worker.config.loader import describe
from worker.config.models import Agent, Connection, SmsConfig
from worker.config.patch import merge_patch
from worker.errors import ConfigError

VERSION_KEY = "sms:config:version"
CONNECTIONS_KEY = "sms:config:connections"
AGENTS_KEY = "sms:config:agents"
CHANGES_KEY = "sms:config:changes"

T = TypeVar("T")

#: writes that lose the race against concurrent writes this many times in a row give up
_MAX_ATTEMPTS = 50
#: `changes` member prefixes: the kind of item, then its label or id
_CONNECTION, _AGENT = "c:", "a:"

#: KEYS: version, changes, connections, agents. ARGV: the version the caller holds (-1: none).
#: Returns {version} when unchanged, else {version, full, member, value-or-nil, ...}; `full` means
#: "replace what you hold" (first load, or a store that was emptied and rebuilt).
_CHANGES_SINCE = """
local version = tonumber(redis.call('GET', KEYS[1]) or '0')
local since = tonumber(ARGV[1])
if version == since then return {version} end
local full = 0
if since < 0 or version < since then since = 0; full = 1 end
local reply = {version, full}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. since, '+inf')) do
  local hash = KEYS[3]
  if string.sub(member, 1, 2) == 'a:' then hash = KEYS[4] end
  table.insert(reply, member)
  table.insert(reply, redis.call('HGET', hash, string.sub(member, 3)))
end
return reply
"""


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed since a version: raw sealed JSON by label / id, None for a removed item."""

    version: int
    full: bool
    connections: dict[str, bytes | None] = field(default_factory=dict)
    agents: dict[str, bytes | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The store as read in one transaction: sealed documents (secrets still encrypted)."""

    version: int
    connections: dict[str, sealed.Document]
    agents: dict[str, sealed.Document]


@dataclass(slots=True)
class Draft:
    """The whole config in plain form (secrets in clear, in memory only), as an edit changes it."""

    connections: dict[str, sealed.Document]
    agents: dict[str, sealed.Document]


def validate_draft(draft: Draft) -> SmsConfig:
    """The draft as a validated config; a refusal names the connection or agent and the field."""
    data = {"connections": list(draft.connections.values()), "agents": draft.agents}
    try:
        return SmsConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc, data)) from None


class RedisConfigStore:
    """Reads and writes the config in Redis. Secrets are encrypted with the newest key of `crypto`."""

    def __init__(self, client: redis.Redis, crypto: Crypto) -> None:
        self._redis = client
        self.crypto = crypto
        self._changes_since = client.register_script(_CHANGES_SINCE)

    # -- reading ----------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(VERSION_KEY)
            pipe.hgetall(CONNECTIONS_KEY)
            pipe.hgetall(AGENTS_KEY)
            version, connections, agents = pipe.execute()
        return self._snapshot(version, connections, agents)

    def load(self) -> SmsConfig:
        """The whole config, decrypted and validated."""
        return validate_draft(self._open(self.snapshot()))

    def export(self) -> sealed.Document:
        """The whole config in the file format, every secret an `enc:` token (nothing is decrypted)."""
        snapshot = self.snapshot()
        return {
            "connections": [snapshot.connections[label] for label in sorted(snapshot.connections)],
            "agents": {agent_id: snapshot.agents[agent_id] for agent_id in sorted(snapshot.agents)},
        }

    def changes_since(self, version: int) -> Changes | None:
        """The items changed since `version` (-1: everything), or None when nothing changed.

        One round trip; a consistent view (a script runs atomically)."""
        reply = self._changes_since(
            keys=[VERSION_KEY, CHANGES_KEY, CONNECTIONS_KEY, AGENTS_KEY], args=[version]
        )
        if len(reply) == 1:
            return None
        changes = Changes(version=int(reply[0]), full=bool(int(reply[1])))
        pairs = reply[2:]
        for member, value in zip(pairs[::2], pairs[1::2], strict=True):
            name = as_text(member)
            target = changes.agents if name.startswith(_AGENT) else changes.connections
            target[name[2:]] = value
        return changes

    # -- writing ----------------------------------------------------------------------------------

    def connection_from(self, data: Mapping[str, Any]) -> Connection:
        """`data` as a validated connection (secrets in clear or as `enc:` tokens) that this store
        can encrypt; nothing is written."""
        subject = f"connection {data.get('label')!r}"
        document = sealed.open_secrets(
            dict(data), sealed.CONNECTION_SECRETS, self.crypto, subject=subject, sealed_only=False
        )
        try:
            connection = Connection.model_validate(document)
        except ValidationError as exc:
            raise ConfigError(f"{subject}: {validation_problems(exc)}") from None
        sealed.seal(connection, self.crypto)  # refuses now, not after the caller's checks, without a key
        return connection

    def add_connection(self, data: Mapping[str, Any], *, replace: bool = False) -> Connection:
        """Add (or with `replace`, overwrite) a connection; secrets in clear or as `enc:` tokens."""
        connection = self.connection_from(data)
        subject = f"connection {connection.label!r}"

        def edit(draft: Draft) -> None:
            if connection.label in draft.connections and not replace:
                raise ConfigError(f"{subject}: already exists (use --replace to overwrite it)")
            draft.connections[connection.label] = sealed.plain(connection)

        config = self._write(edit)
        found = config.connection(connection.label)
        assert found is not None
        return found

    def remove_connection(self, label: str) -> None:
        def edit(draft: Draft) -> None:
            if label not in draft.connections:
                raise ConfigError(f"connection {label!r}: no such connection")
            users = sorted(agent_id for agent_id, body in draft.agents.items() if label in _references(body))
            if users:
                raise ConfigError(
                    f"connection {label!r}: used by agent(s) {', '.join(map(repr, users))}; change them first"
                )
            del draft.connections[label]

        self._write(edit)

    def set_agent(self, agent_id: str, body: Mapping[str, Any], *, replace: bool = False) -> Agent:
        """Merge the platform's agent body into the stored one (RFC 7396, like a PATCH), or with
        `replace` store it as given. Only `voice_tools` is read; secrets in clear or as `enc:` tokens."""
        subject = f"agent {agent_id!r}"
        if not agent_id or len(agent_id) > 200:
            raise ConfigError(f"{subject}: an agent id has 1 to 200 characters")
        patch = {"voice_tools": body["voice_tools"]} if "voice_tools" in body else {}

        def edit(draft: Draft) -> None:
            current = {} if replace else draft.agents.get(agent_id, {})
            draft.agents[agent_id] = sealed.open_secrets(
                merge_patch(current, patch),
                sealed.AGENT_SECRETS,
                self.crypto,
                subject=subject,
                sealed_only=False,
            )

        return self._write(edit).agents[agent_id]

    def remove_agent(self, agent_id: str) -> None:
        def edit(draft: Draft) -> None:
            if draft.agents.pop(agent_id, None) is None:
                raise ConfigError(f"agent {agent_id!r}: no such agent")

        self._write(edit)

    def import_config(self, config: SmsConfig, *, merge: bool = False) -> SmsConfig:
        """Replace the whole config with `config` (or with `merge`, add and overwrite item by item)."""

        def edit(draft: Draft) -> None:
            if not merge:
                draft.connections.clear()
                draft.agents.clear()
            draft.connections.update({c.label: sealed.plain(c) for c in config.connections})
            draft.agents.update({agent_id: sealed.plain(a) for agent_id, a in config.agents.items()})

        return self._write(edit)

    def rotate_keys(self) -> int:
        """Re-encrypt with the newest key every secret it cannot open alone; returns how many.

        Refused whole unless every stored secret opens with the configured keys."""

        def attempt(pipe: Pipeline) -> int:
            snapshot = self._read(pipe)
            validate_draft(self._open(snapshot))
            writes: list[tuple[str, str, str | None]] = []
            rotated = 0
            for prefix, documents, paths, kind in (
                (_CONNECTION, snapshot.connections, sealed.CONNECTION_SECRETS, "connection"),
                (_AGENT, snapshot.agents, sealed.AGENT_SECRETS, "agent"),
            ):
                for name, document in documents.items():
                    count = sealed.rotate_secrets(document, paths, self.crypto, subject=f"{kind} {name!r}")
                    if count:
                        rotated += count
                        writes.append((prefix, name, sealed.encode(document)))
            pipe.multi()
            _stage(pipe, snapshot.version, writes)
            return rotated

        return self._transaction(attempt)

    # -- internals --------------------------------------------------------------------------------

    def _write(self, edit: Callable[[Draft], None]) -> SmsConfig:
        """Apply `edit` to the whole config, validate the result whole, write what changed atomically."""

        def attempt(pipe: Pipeline) -> SmsConfig:
            snapshot = self._read(pipe)
            before = self._open(snapshot)
            draft = copy.deepcopy(before)
            edit(draft)
            config = validate_draft(draft)
            writes = [
                *_diff(
                    _CONNECTION, before.connections, {c.label: c for c in config.connections}, self.crypto
                ),
                *_diff(_AGENT, before.agents, dict(config.agents), self.crypto),
            ]
            pipe.multi()
            _stage(pipe, snapshot.version, writes)
            return config

        return self._transaction(attempt)

    def _transaction(self, attempt: Callable[[Pipeline], T]) -> T:
        """Run `attempt` (read, then MULTI and queue writes) and EXEC; start over when another write
        changed the version in between."""
        for _ in range(_MAX_ATTEMPTS):
            with self._redis.pipeline(transaction=True) as pipe:
                try:
                    result = attempt(pipe)
                    pipe.execute()
                    return result
                except redis.WatchError:
                    continue
        raise ConfigError("the config store kept changing during this write; try again")

    def _read(self, pipe: Pipeline) -> Snapshot:
        """The store, read on a pipeline that WATCHes the version (commands run immediately)."""
        pipe.watch(VERSION_KEY)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        return self._snapshot(pipe.get(VERSION_KEY), pipe.hgetall(CONNECTIONS_KEY), pipe.hgetall(AGENTS_KEY))

    @staticmethod
    def _snapshot(version: Any, connections: dict[Any, Any], agents: dict[Any, Any]) -> Snapshot:
        def documents(kind: str, raw: dict[Any, Any]) -> dict[str, sealed.Document]:
            # Sorted, so that a refusal always names the same (first) item whatever the hash order.
            named = sorted((as_text(name), value) for name, value in raw.items())
            return {name: sealed.load_document(value, subject=f"{kind} {name!r}") for name, value in named}

        return Snapshot(
            version=int(version or 0),
            connections=documents("connection", connections),
            agents=documents("agent", agents),
        )

    def _open(self, snapshot: Snapshot) -> Draft:
        """The snapshot in plain form: every secret decrypted (a wrong key is refused, naming the field)."""
        return Draft(
            connections={
                label: sealed.open_secrets(
                    doc,
                    sealed.CONNECTION_SECRETS,
                    self.crypto,
                    subject=f"connection {label!r}",
                    sealed_only=True,
                )
                for label, doc in snapshot.connections.items()
            },
            agents={
                agent_id: sealed.open_secrets(
                    doc, sealed.AGENT_SECRETS, self.crypto, subject=f"agent {agent_id!r}", sealed_only=True
                )
                for agent_id, doc in snapshot.agents.items()
            },
        )


def _sms(body: sealed.Document) -> dict[str, Any]:
    sms = body.get("voice_tools", {}).get("sms_mid_call", {})
    return sms if isinstance(sms, dict) else {}


def _references(body: sealed.Document) -> set[str]:
    sms = _sms(body)
    return {sms[f] for f in ("connection", "fallback_connection") if isinstance(sms.get(f), str)}


def _diff(
    prefix: str,
    before: Mapping[str, sealed.Document],
    after: Mapping[str, Connection | Agent],
    crypto: Crypto,
) -> Iterable[tuple[str, str, str | None]]:
    """(prefix, name, sealed JSON or None for a removal) of each item that differs. An unchanged item
    is not rewritten: re-encrypting it would change its ciphertext and make every worker reload it."""
    for name in sorted(before.keys() | after.keys()):
        model = after.get(name)
        if model is None:
            yield prefix, name, None
        elif sealed.plain(model) != before.get(name):
            yield prefix, name, sealed.encode(sealed.seal(model, crypto))


def _stage(pipe: Pipeline, version: int, writes: list[tuple[str, str, str | None]]) -> None:
    """Queue the writes, their change entries and the next version (inside MULTI; nothing if no change)."""
    if not writes:
        return
    for prefix, name, value in writes:
        key = AGENTS_KEY if prefix == _AGENT else CONNECTIONS_KEY
        if value is None:
            pipe.hdel(key, name)
        else:
            pipe.hset(key, name, value)
        # The next version: the WATCH guarantees nobody else writes before our EXEC.
        pipe.zadd(CHANGES_KEY, {prefix + name: version + 1})
    pipe.incr(VERSION_KEY)
