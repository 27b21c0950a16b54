"""Which from-numbers a connection sends from, checked against its account; the number picker.

Used by `config connection numbers` (the account's numbers, and which one the connection and its
agents use), `connection add` (check `--from-number`, or offer the SMS-capable numbers) and
`connection test` (one line per from-number in use).

Phone numbers are personal data when they are a recipient's. The numbers a provider lists for the
account are the account's own senders, which the user must see to pick one, so the listing and the
picker show them in full. Every other number (a from-number that is not on the account, and every
line of `connection test`, which ends up in CI logs) is masked; credentials are never shown.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from producers.contract import mask_number
from worker.config.models import Connection, SmsConfig
from worker.errors import ConfigError
from worker.provider_specs import SPECS
from worker.providers.numbers import AccountNumber, NumberListing, SenderCheck
from worker.providers.probe import NumbersResult
from worker.providers.registry import provider_class
from worker.recipients import InvalidNumber, normalize

#: How many numbers a refusal names before "… and N more".
SHOWN_IN_ERRORS = 20
#: Wrong answers to the picker's prompt before `connection add` gives up.
PICKER_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class SenderUse:
    """One from-number sent from through the connection, and who sends from it."""

    number: str
    users: tuple[str, ...]  # "connection", "agent a1", "agent a2 (fallback)"


def senders_of(config: SmsConfig, connection: Connection) -> list[SenderUse]:
    """The from-numbers used through `connection`: its own, and each agent's that sends through it
    (its `connection`, or the provider's default connection) or falls back to it — with the
    precedence the worker applies (`worker/plan.py`, the fallback in `worker/service.py`)."""
    users: dict[str, list[str]] = {}

    def use(number: str | None, user: str) -> None:
        if number:
            users.setdefault(number, []).append(user)

    use(connection.from_number, "connection")
    for agent_id in sorted(config.agents):
        sms = config.agents[agent_id].sms
        if sms.connection is not None:
            primary = config.connection(sms.connection)
        elif sms.provider is not None and not SPECS[sms.provider].endpoint_url:
            primary = config.default_connection(sms.provider)
        else:
            primary = None
        sender = sms.from_number or (primary.from_number if primary is not None else None)
        if primary is not None and primary.label == connection.label:
            use(sms.from_number or connection.from_number, f"agent {agent_id}")
        if sms.fallback_connection == connection.label:
            use(connection.from_number or sender, f"agent {agent_id} (fallback)")
    return [SenderUse(number, tuple(who)) for number, who in users.items()]


def check_senders(connection: Connection, listing: NumberListing, uses: list[SenderUse]) -> list[SenderCheck]:
    provider = provider_class(connection.provider)
    return [provider.check_sender(connection, listing, use.number) for use in uses]


# -- `connection numbers` ----------------------------------------------------------------------------


def numbers_table(connection: Connection, listing: NumberListing, uses: list[SenderUse]) -> str:
    """The account's numbers with what each can do and who uses it, then the from-numbers in use
    that the account does not list (masked)."""
    used = {use.number: use.users for use in uses}
    sms = len(listing.sms_capable)
    head = f"connection {connection.label!r} ({connection.provider}): "
    head += f"{len(listing.numbers)} number(s), {sms} SMS-capable"
    if listing.truncated:
        head += f" (the first {len(listing.numbers)} read; the account has more)"
    if listing.note:
        head += f"; {listing.note}"
    rows = [["NUMBER", "SMS", "MMS", "VOICE", "NAME", "DETAILS", "USED BY"]]
    for n in listing.numbers:
        flags = ["yes" if on else "-" for on in (n.sms, n.mms, n.voice)]
        rows.append([n.number, *flags, n.name or "", _details(n), ", ".join(used.get(n.number, ()))])
    checks = check_senders(connection, listing, uses)
    for use, check in zip(uses, checks, strict=True):
        if listing.find(use.number) is None:
            masked = mask_number(use.number) or ""
            rows.append([masked, "?", "?", "?", "", check.reason, ", ".join(use.users)])
    return head + "\n" + table(rows)


def numbers_json(connection: Connection, result: NumbersResult, uses: list[SenderUse]) -> str:
    """`numbers --json`: the listing (numbers in full), or why there is none."""
    document: dict[str, Any] = {"connection": connection.label, "provider": connection.provider}
    if result.unsupported is not None:
        document |= {"numbers": None, "unsupported": result.unsupported}
    elif result.error is not None:
        document |= {"numbers": None, "error": {"code": result.error.outcome, "detail": result.error.detail}}
    else:
        listing = result.listing
        assert listing is not None
        used = {use.number: list(use.users) for use in uses}
        document["numbers"] = [
            {
                "number": n.number,
                "sms": n.sms,
                "mms": n.mms,
                "voice": n.voice,
                "name": n.name,
                "status": n.status,
                "messaging_profile_id": n.messaging_profile_id,
                "messaging_profile_name": n.messaging_profile_name,
                "used_by": used.get(n.number, []),
            }
            for n in listing.numbers
        ]
        document["truncated"] = listing.truncated
        document["note"] = listing.note
        document["senders"] = [
            {"number": mask_number(use.number), "used_by": list(use.users), "ok": c.ok, "reason": c.reason}
            for use, c in zip(uses, check_senders(connection, listing, uses), strict=True)
        ]
    return json.dumps(document, indent=2, ensure_ascii=False)


def _details(number: AccountNumber) -> str:
    parts = [number.status] if number.status else []
    if number.messaging_profile_id:
        parts.append(f"messaging profile {number.messaging_profile_name or number.messaging_profile_id}")
    return "; ".join(parts)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


# -- `connection add` ---------------------------------------------------------------------------------


def refuse_sender(connection: Connection, check: SenderCheck) -> ConfigError:
    return ConfigError(
        f"connection {connection.label!r}: --from-number {mask_number(check.number)} cannot send SMS "
        f"through this {connection.provider} account: {check.reason}; "
        "nothing was stored (--no-verify skips this check)"
    )


def listed(numbers: tuple[AccountNumber, ...]) -> str:
    shown = ", ".join(n.number for n in numbers[:SHOWN_IN_ERRORS])
    more = len(numbers) - SHOWN_IN_ERRORS
    return shown + (f" and {more} more" if more > 0 else "")


def pick(connection: Connection, candidates: tuple[AccountNumber, ...], *, stdin: TextIO, out: TextIO) -> str:
    """Offer `candidates` on a terminal and return the chosen number (by its position or itself)."""
    print(f"connection {connection.label!r}: the account's SMS-capable numbers:", file=out)
    for index, n in enumerate(candidates, 1):
        extra = f"  {n.name}" if n.name else ""
        print(f"  {index:>3}  {n.number}{extra}", file=out)
    for _ in range(PICKER_ATTEMPTS):
        print(f"from-number [1-{len(candidates)}]: ", end="", file=out, flush=True)
        line = stdin.readline()
        if not line:  # end of input: the refusal goes on its own line
            print(file=out)
            break
        answer = line.strip()
        if answer.isdigit() and 1 <= int(answer) <= len(candidates):
            return candidates[int(answer) - 1].number
        try:
            number = normalize(answer)
        except InvalidNumber:
            number = ""
        if any(n.number == number for n in candidates):
            return number
        print(f"  not one of the {len(candidates)} numbers above", file=out)
    raise ConfigError(f"connection {connection.label!r}: no from-number chosen; nothing was stored")


def interactive() -> bool:
    """Whether `connection add` may ask: standard input is a terminal."""
    return sys.stdin.isatty()
