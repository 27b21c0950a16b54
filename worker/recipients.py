"""Phone numbers: E.164 validation and normalization (phonenumbers), and the default recipient."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

from producers.contract import CallContext


class InvalidNumber(ValueError):
    """The text is not a valid phone number in international form."""


#: Numbers recently normalized (a call's texts go to one caller from one sender; parsing and
#: validating one costs ~100 µs). Invalid numbers raise and are not kept.
_CACHED = 4096


@lru_cache(maxsize=_CACHED)
def normalize(number: str) -> str:
    """`number` in E.164 form (`+14155551234`); raises `InvalidNumber`.

    International form only: there is no default region to guess a national number's country.
    Pure, so recent answers are reused.
    """
    text = number.strip()
    if not text.startswith("+"):
        raise InvalidNumber("the number must start with + and the country code")
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        raise InvalidNumber("the number can't be parsed") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidNumber("the number is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=_CACHED)
def region_of(e164: str) -> str | None:
    """The ISO country code of an E.164 number (`US`), if known."""
    region: str | None = phonenumbers.region_code_for_number(phonenumbers.parse(e164, None))
    # "ZZ" is unknown and "001" non-geographic (+800, +882…): neither is a country.
    return region if region and len(region) == 2 and region.isalpha() and region != "ZZ" else None


def customer_number(call: CallContext) -> str:
    """Whom to text by default: the caller on inbound calls, the dialed number on outbound calls."""
    return call.customer_number
