"""The numbers on a provider account: what `SmsProvider.list_numbers()` returns and how a sender is
checked against them (`config connection numbers / add / test`).

Each provider module reads its own list API and pages through it to the end, bounded by
`MAX_NUMBERS`; what a provider calls a number's name, status or messaging profile is mapped onto
`AccountNumber` there. A provider without a list (a custom endpoint) raises `NotSupported`.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The most numbers read from one account; a longer list is cut here and marked `truncated`.
MAX_NUMBERS = 1000
#: The most list requests for one listing, whatever the pages hold (an API that keeps answering
#: `next` with empty pages cannot keep us reading).
MAX_PAGES = 60


class NotSupported(Exception):
    """The provider has no such request (a custom endpoint has no number list); the message says so."""


@dataclass(frozen=True, slots=True)
class AccountNumber:
    """One number of the account and what it can do."""

    number: str  # E.164
    sms: bool
    mms: bool
    voice: bool
    #: Twilio friendly_name, Plivo alias, Telnyx customer_reference
    name: str | None = None
    #: the provider's own status of the number (Twilio `status`, Telnyx `status`), if it has one
    status: str | None = None
    #: Telnyx: the messaging profile the number is on (its id; the name when Telnyx gives one)
    messaging_profile_id: str | None = None
    messaging_profile_name: str | None = None

    @property
    def capabilities(self) -> tuple[str, ...]:
        """The capabilities it has, of ("sms", "mms", "voice")."""
        return tuple(name for name, on in (("sms", self.sms), ("mms", self.mms), ("voice", self.voice)) if on)


@dataclass(frozen=True, slots=True)
class NumberListing:
    """The account's numbers, in the provider's order."""

    numbers: tuple[AccountNumber, ...]
    #: the account has more than `MAX_NUMBERS`; the rest were not read
    truncated: bool = False
    #: said beside the list (the sandbox: it sends from any number)
    note: str | None = None

    def find(self, number: str) -> AccountNumber | None:
        return next((n for n in self.numbers if n.number == number), None)

    @property
    def sms_capable(self) -> tuple[AccountNumber, ...]:
        return tuple(n for n in self.numbers if n.sms)


@dataclass(frozen=True, slots=True)
class SenderCheck:
    """Whether one from-number can send SMS through the account, and why not."""

    number: str
    ok: bool
    #: "on the account, SMS-capable" / "not on the account" / "on the account but not SMS-capable"…
    reason: str


def check_in_listing(listing: NumberListing, number: str) -> SenderCheck:
    """The usual check: the number is on the account and SMS-capable."""
    found = listing.find(number)
    if found is None:
        where = f"among the first {len(listing.numbers)} numbers" if listing.truncated else "on the account"
        return SenderCheck(number, False, f"not {where}")
    if not found.sms:
        can = f"{'/'.join(found.capabilities)} only" if found.capabilities else "no capabilities"
        return SenderCheck(number, False, f"on the account but not SMS-capable ({can})")
    return SenderCheck(number, True, "on the account, SMS-capable")
