"""The numbers a fake provider account owns, which its list-numbers endpoints serve.

    FakeTwilio(numbers=[OwnedNumber("+14155550000", name="Support"), OwnedNumber.voice_only("+14155550009")])

Every fake takes `numbers=` (default: the senders the existing tests use, each SMS-, MMS- and
voice-capable) and answers its provider's list endpoint with them, in the provider's own paging
(Twilio `PageSize`/`PageToken`, Plivo `limit`/`offset`, Telnyx `page[number]`/`page[size]`). A send
from one of them that cannot do SMS is refused the way the provider refuses it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class OwnedNumber:
    """One number on the fake account and what it can do.

    `messaging_profile_id` is Telnyx's: None puts an SMS-capable number on the fake's own profile,
    and leaves a number without SMS off every profile."""

    number: str  # +E.164
    sms: bool = True
    mms: bool = True
    voice: bool = True
    name: str | None = None
    messaging_profile_id: str | None = None

    @classmethod
    def voice_only(cls, number: str, name: str | None = None) -> OwnedNumber:
        return cls(number, sms=False, mms=False, voice=True, name=name)

    def hex_id(self, length: int = 32) -> str:
        """A stable hex id for this number (the fakes derive resource ids from it)."""
        return hashlib.sha256(self.number.encode()).hexdigest()[:length]

    def digit_id(self, length: int = 19) -> str:
        """A stable all-digit id (Telnyx's number and connection ids look like this)."""
        return str(int(self.hex_id(), 16))[:length]


def owned(numbers: Iterable[OwnedNumber | str] | None, default: Iterable[str]) -> tuple[OwnedNumber, ...]:
    """`numbers` as OwnedNumbers (a plain string is a number that can do everything); `default` when None."""
    chosen = default if numbers is None else numbers
    return tuple(n if isinstance(n, OwnedNumber) else OwnedNumber(n) for n in chosen)


def cannot_send_from(numbers: Iterable[OwnedNumber], sender: object) -> bool:
    """Whether `sender` is one of the account's numbers that cannot send SMS (a voice-only line): the
    providers refuse such a sender (Twilio 21606, Telnyx 40305, Plivo 400). A number the account does
    not list is not refused here (the fakes accept any sender unless told otherwise)."""
    return any(n.number == sender and not n.sms for n in numbers)


def page_bounds(total: int, offset: int, size: int) -> tuple[int, int]:
    """[start, end) of a page of `size` items from `offset`, clipped to `total`."""
    start = min(max(offset, 0), total)
    return start, min(start + size, total)
