"""How many SMS segments a body costs: GSM-7 (160, or 153 per part) or UCS-2 (70, or 67 per part)."""

from __future__ import annotations

_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: characters of the GSM-7 extension table: each takes two septets
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


def encoding(body: str) -> str:
    """`GSM-7` if every character fits the GSM 03.38 alphabet, else `UCS-2`."""
    return "GSM-7" if all(c in _GSM7_BASIC or c in _GSM7_EXTENDED for c in body) else "UCS-2"


def count(body: str) -> int:
    """The number of segments a carrier bills for `body` (at least 1)."""
    if encoding(body) == "GSM-7":
        units = sum(2 if c in _GSM7_EXTENDED else 1 for c in body)
        single, part = 160, 153
    else:
        # UCS-2 counts UTF-16 code units: an emoji outside the BMP takes two.
        units = len(body.encode("utf-16-le")) // 2
        single, part = 70, 67
    if units <= single:
        return 1
    return -(-units // part)
