"""Phone-number and SMS-segment arithmetic shared by the fakes (what providers report back)."""

from __future__ import annotations

import math
import re

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
"""A +E.164 number: a plus, a country code not starting with 0, at most 15 digits in all."""

# GSM 03.38: the basic set costs one septet per character, the extension set two (escape + char).
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")


def is_gsm7(text: str) -> bool:
    """Whether `text` fits the GSM-7 alphabet (else it goes out as UCS-2)."""
    return all(char in _GSM7_BASIC or char in _GSM7_EXTENSION for char in text)


def sms_segments(text: str) -> int:
    """How many SMS segments `text` needs: 160/153 septets for GSM-7, 70/67 UTF-16 units for UCS-2."""
    if is_gsm7(text):
        units = sum(2 if char in _GSM7_EXTENSION else 1 for char in text)
        single, multi = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2  # characters outside the BMP take two units
        single, multi = 70, 67
    return 1 if units <= single else math.ceil(units / multi)
