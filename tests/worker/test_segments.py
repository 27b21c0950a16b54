"""SMS segments: GSM-7 160/153, extension characters count double, UCS-2 70/67, pairs never split,
and smart encoding."""

from __future__ import annotations

import pytest

from worker.segments import SMART_REPLACEMENTS, analyze, count, encoding, smart_encode


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (159, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4), (1600, 11)],
)
def test_gsm7_single_160_then_153_per_part(length: int, segments: int) -> None:
    """A GSM-7 body fits 160 characters in one segment and 153 per segment beyond that."""
    assert count("a" * length) == segments


def test_empty_body_is_one_segment() -> None:
    """An empty body still costs one segment."""
    assert count("") == 1


def test_gsm7_basic_alphabet_includes_accented_and_greek_letters() -> None:
    """Characters of the GSM 03.38 basic table (é, ñ, Δ, £, @, newline) keep a body in GSM-7."""
    body = "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ!¡¿§ÄÖÑÜäöñüà\n\r"
    assert encoding(body) == "gsm7"
    filled = (body * 10)[:160]
    assert count(filled) == 1
    assert count(filled + "a") == 2


@pytest.mark.parametrize("char", list("^{}\\[~]|€"))
def test_extension_characters_count_double(char: str) -> None:
    """Each GSM-7 extension character takes two septets: 80 of them fill one segment, 81 do not."""
    assert encoding(char) == "gsm7"
    assert count(char * 80) == 1
    assert count(char * 81) == 2


def test_extension_characters_push_a_body_over_the_boundary() -> None:
    """159 plain characters plus one extension character make 161 septets: two segments."""
    assert count("a" * 158 + "€") == 1
    assert count("a" * 159 + "€") == 2


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)],
)
def test_ucs2_single_70_then_67_per_part(length: int, segments: int) -> None:
    """A body with a non-GSM character is UCS-2: 70 units in one segment, 67 per segment beyond."""
    body = "ç" + "a" * (length - 1)  # ç (lowercase) is not in GSM-7: the whole body becomes UCS-2
    assert encoding(body) == "ucs2"
    assert count(body) == segments


def test_one_non_gsm_character_switches_the_whole_body_to_ucs2() -> None:
    """100 plain characters fit GSM-7 in one segment, but one Cyrillic letter makes them two UCS-2 ones."""
    assert count("a" * 100) == 1
    assert count("a" * 99 + "ж") == 2


def test_emoji_count_as_two_units() -> None:
    """An emoji outside the Basic Multilingual Plane takes two UTF-16 units."""
    assert encoding("😀") == "ucs2"
    assert count("😀" * 35) == 1
    assert count("😀" * 36) == 2
    assert count("a" * 69 + "😀") == 2


# (body, encoding, parts): the boundary cases a naive units ÷ 153 (or ÷ 67) gets wrong
SEGMENT_TABLE = [
    pytest.param("a" * 152 + "€" + "a" * 152, "gsm7", 3, id="escape-pair-straddles-part-1"),
    pytest.param("a" * 153 + "€" + "a" * 151, "gsm7", 2, id="escape-pair-starts-part-2"),
    pytest.param("a" * 151 + "€" + "a" * 153, "gsm7", 2, id="escape-pair-ends-part-1"),
    pytest.param("€" * 153, "gsm7", 3, id="all-escapes-76-per-part"),
    pytest.param("€" * 152, "gsm7", 2, id="all-escapes-two-parts"),
    pytest.param("日" * 66 + "😀" + "日" * 66, "ucs2", 3, id="surrogate-pair-straddles-part-1"),
    pytest.param("日" * 65 + "😀" + "日" * 67, "ucs2", 2, id="surrogate-pair-ends-part-1"),
    pytest.param("😀" * 67, "ucs2", 3, id="all-emoji-33-per-part"),
    pytest.param("😀" * 66, "ucs2", 2, id="all-emoji-two-parts"),
    pytest.param("a" * 160, "gsm7", 1, id="gsm7-single"),
    pytest.param("a" * 158 + "€", "gsm7", 1, id="escape-in-a-single-sms"),
    pytest.param("a" * 68 + "😀", "ucs2", 1, id="emoji-in-a-single-sms"),
]


@pytest.mark.parametrize(("body", "enc", "parts"), SEGMENT_TABLE)
def test_a_pair_that_would_straddle_two_parts_moves_whole_into_the_next(
    body: str, enc: str, parts: int
) -> None:
    """An escape pair (GSM-7 extension) or a surrogate pair (UCS-2) is never split across parts."""
    result = analyze(body)
    assert (result.encoding, result.parts) == (enc, parts)
    assert count(body) == parts


def test_analyze_reports_units_and_characters() -> None:
    """Units are septets or UTF-16 units; characters are code points."""
    assert analyze("a€").units == 3
    assert analyze("a€").chars == 2
    assert analyze("日😀").units == 3
    assert analyze("日😀").chars == 2


# (typographic character, its GSM-7 stand-in)
SMART_TABLE = [
    ("\u2018", "'"), ("\u2019", "'"), ("\u201a", "'"), ("\u201b", "'"), ("\u2032", "'"),
    ("\u201c", '"'), ("\u201d", '"'), ("\u201e", '"'), ("\u201f", '"'), ("\u2033", '"'),
    ("\u00ab", '"'), ("\u00bb", '"'), ("\u2039", "<"), ("\u203a", ">"),
    ("\u2010", "-"), ("\u2011", "-"), ("\u2012", "-"), ("\u2013", "-"), ("\u2014", "-"),
    ("\u2015", "-"), ("\u2212", "-"),
    ("\u2026", "..."),
    ("\u00a0", " "), ("\u2002", " "), ("\u2003", " "), ("\u2004", " "), ("\u2005", " "),
    ("\u2006", " "), ("\u2007", " "), ("\u2008", " "), ("\u2009", " "), ("\u200a", " "),
    ("\u202f", " "), ("\u205f", " "), ("\u3000", " "),
    ("\u200b", ""), ("\u200c", ""), ("\u200d", ""), ("\u2060", ""), ("\ufeff", ""), ("\u00ad", ""),
    ("\u2022", "-"), ("\u2044", "/"), ("\u2215", "/"), ("\u00d7", "x"), ("\u02c6", "^"), ("\u02dc", "~"),
]  # fmt: skip


@pytest.mark.parametrize(("char", "replacement"), SMART_TABLE)
def test_smart_encoding_replaces_each_typographic_character_with_gsm7(char: str, replacement: str) -> None:
    """Each typographic character alone makes a body UCS-2; smart encoding turns it into GSM-7."""
    body = f"Booked{char}for 2 PM"
    assert encoding(body) == "ucs2"
    assert smart_encode(body) == f"Booked{replacement}for 2 PM"
    assert encoding(smart_encode(body)) == "gsm7"


def test_the_smart_table_is_tested_whole() -> None:
    """Every replacement the code makes is in the test table above, and only those."""
    assert dict(SMART_TABLE) == SMART_REPLACEMENTS


def test_smart_encoding_leaves_other_text_alone() -> None:
    """Letters outside GSM-7 (Cyrillic, emoji) and GSM-7 text itself are not changed."""
    assert smart_encode("Привет 😀 {ok} €5 café") == "Привет 😀 {ok} €5 café"
