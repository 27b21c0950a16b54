"""Phone numbers: E.164 normalization, national numbers refused, invalid numbers refused, regions."""

from __future__ import annotations

import pytest

from producers.contract import CallContext
from worker.recipients import InvalidNumber, customer_number, normalize, region_of


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+14155551234", "+14155551234"),
        ("+1 (415) 555-1234", "+14155551234"),
        ("+1.415.555.1234", "+14155551234"),
        ("  +14155551234\n", "+14155551234"),
        ("+44 20 7183 8750", "+442071838750"),
        ("+33 6 12 34 56 78", "+33612345678"),
    ],
)
def test_international_numbers_are_normalized_to_e164(raw: str, e164: str) -> None:
    """A valid number written with + and its country code, in any punctuation, becomes E.164."""
    assert normalize(raw) == e164


@pytest.mark.parametrize(
    "raw", ["4155551234", "(415) 555-1234", "0207 183 8750", "0033612345678", "14155551234"]
)
def test_national_numbers_without_plus_are_refused(raw: str) -> None:
    """A number without the leading + is refused: there is no default region to guess from."""
    with pytest.raises(InvalidNumber, match="must start with \\+"):
        normalize(raw)


@pytest.mark.parametrize(
    "raw", ["+", "+1", "+1415555", "+141555512345678", "+999123456789", "+1 hello", "+++"]
)
def test_invalid_numbers_are_refused(raw: str) -> None:
    """Too short, too long, unknown country code and garbage after a + are refused."""
    with pytest.raises(InvalidNumber):
        normalize(raw)


def test_invalid_number_is_a_value_error() -> None:
    """InvalidNumber is a ValueError."""
    assert issubclass(InvalidNumber, ValueError)


@pytest.mark.parametrize(
    ("e164", "region"),
    [("+14155551234", "US"), ("+442071838750", "GB"), ("+33612345678", "FR"), ("+16135550123", "CA")],
)
def test_region_of_gives_the_iso_country(e164: str, region: str) -> None:
    """region_of gives the ISO 3166 country code of an E.164 number."""
    assert region_of(e164) == region


def test_region_of_a_non_geographic_number_is_none() -> None:
    """A valid non-geographic number (+800 international freephone) has no ISO country: None."""
    assert normalize("+80012345678") == "+80012345678"
    assert region_of("+80012345678") is None


def test_customer_number_follows_the_call_direction() -> None:
    """The default recipient is the caller on inbound calls and the dialed number on outbound ones."""
    inbound = CallContext(
        call_id="CA1", direction="inbound", from_number="+14155551234", to_number="+14155550000"
    )
    outbound = inbound.model_copy(update={"direction": "outbound"})
    assert customer_number(inbound) == "+14155551234"
    assert customer_number(outbound) == "+14155550000"
