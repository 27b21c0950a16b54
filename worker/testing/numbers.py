"""Phone-number and SMS-segment arithmetic shared by the fakes (what providers report back)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Final

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


OPT_OUT_KEYWORDS: Final[Mapping[str, frozenset[str]]] = {
    "STOP": frozenset(
        {"STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"}
    ),
    "START": frozenset({"START", "YES", "UNSTOP"}),
    "HELP": frozenset({"HELP", "INFO"}),
}
"""The default keywords of Twilio's Advanced Opt-Out, by the `OptOutType` an inbound message gets."""


def opt_out_type(body: str) -> str | None:
    """`STOP`, `START` or `HELP` when the whole message (trimmed, any case) is such a keyword."""
    word = " ".join(body.split()).upper()
    return next((kind for kind, words in OPT_OUT_KEYWORDS.items() if word in words), None)
