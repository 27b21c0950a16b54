"""SMS segments: the encoding a body needs, how carriers split it into parts, and smart encoding.

GSM-7 fits 160 septets in one SMS, 153 per part of a longer one (each extension character such as
`€` takes two septets, an escape and the character); anything outside the GSM 03.38 alphabet makes
the whole body UCS-2: 70 UTF-16 units in one SMS, 67 per part (an emoji outside the Basic
Multilingual Plane takes two). A part never splits an escape pair or a surrogate pair: when one
would straddle two parts it moves whole into the next, so `'a'*152 + '€' + 'a'*152` is 3 parts,
not 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Encoding = Literal["gsm7", "ucs2"]

_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: characters of the GSM-7 extension table: each takes two septets
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")

#: units in a single SMS and per part of a concatenated one, per encoding
_SINGLE: dict[Encoding, int] = {"gsm7": 160, "ucs2": 70}
_PART: dict[Encoding, int] = {"gsm7": 153, "ucs2": 67}

#: Smart encoding: typographic characters and their GSM-7 stand-ins (what a word processor or a
#: model puts in a text that would otherwise turn the whole body into UCS-2, at up to three times
#: the segments).
SMART_REPLACEMENTS: dict[str, str] = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2039": "<", "\u203a": ">",
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u2026": "...",
    "\u00a0": " ", "\u2002": " ", "\u2003": " ", "\u2004": " ", "\u2005": " ", "\u2006": " ", "\u2007": " ",
    "\u2008": " ", "\u2009": " ", "\u200a": " ", "\u202f": " ", "\u205f": " ", "\u3000": " ",
    "\u200b": "", "\u200c": "", "\u200d": "", "\u2060": "", "\ufeff": "", "\u00ad": "",
    "\u2022": "-",
    "\u2044": "/", "\u2215": "/",
    "\u00d7": "x",
    "\u02c6": "^", "\u02dc": "~",
}  # fmt: skip
_SMART_TABLE = str.maketrans(SMART_REPLACEMENTS)


@dataclass(frozen=True, slots=True)
class Segments:
    """How a body goes out: its encoding, its parts, and its length in that encoding's units."""

    encoding: Encoding
    parts: int
    #: septets (GSM-7) or UTF-16 code units (UCS-2)
    units: int
    #: characters as a person counts them (code points)
    chars: int


def encoding(body: str) -> Encoding:
    """`gsm7` if every character fits the GSM 03.38 alphabet, else `ucs2`."""
    return "gsm7" if all(c in _GSM7_BASIC or c in _GSM7_EXTENDED for c in body) else "ucs2"


def _unit_lengths(body: str, enc: Encoding) -> list[int]:
    """Each character's size in the encoding's units (an escape or surrogate pair is 2)."""
    if enc == "gsm7":
        return [2 if c in _GSM7_EXTENDED else 1 for c in body]
    return [2 if ord(c) > 0xFFFF else 1 for c in body]


def analyze(body: str) -> Segments:
    """The encoding and the number of parts a carrier bills for `body` (at least 1)."""
    enc = encoding(body)
    sizes = _unit_lengths(body, enc)
    units = sum(sizes)
    if units <= _SINGLE[enc]:
        return Segments(enc, 1, units, len(body))
    room = _PART[enc]
    parts, used = 1, 0
    for size in sizes:
        if used + size > room:  # a pair that would straddle the boundary moves whole
            parts, used = parts + 1, 0
        used += size
    return Segments(enc, parts, units, len(body))


def count(body: str) -> int:
    """The number of segments a carrier bills for `body` (at least 1)."""
    return analyze(body).parts


def smart_encode(body: str) -> str:
    """`body` with typographic characters (curly quotes, dashes, ellipsis, non-breaking and other
    spaces, zero-width characters, bullets) replaced by GSM-7 ones (`SMART_REPLACEMENTS`)."""
    return body.translate(_SMART_TABLE)
