"""SMS segment counting: GSM-7 160/153, extension characters count double, UCS-2 70/67."""

from __future__ import annotations

import pytest

from worker.segments import count, encoding


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
    assert encoding(body) == "GSM-7"
    filled = (body * 10)[:160]
    assert count(filled) == 1
    assert count(filled + "a") == 2


@pytest.mark.parametrize("char", list("^{}\\[~]|€"))
def test_extension_characters_count_double(char: str) -> None:
    """Each GSM-7 extension character takes two septets: 80 of them fill one segment, 81 do not."""
    assert encoding(char) == "GSM-7"
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
    assert encoding(body) == "UCS-2"
    assert count(body) == segments


def test_one_non_gsm_character_switches_the_whole_body_to_ucs2() -> None:
    """100 plain characters fit GSM-7 in one segment, but one Cyrillic letter makes them two UCS-2 ones."""
    assert count("a" * 100) == 1
    assert count("a" * 99 + "ж") == 2


def test_emoji_count_as_two_units() -> None:
    """An emoji outside the Basic Multilingual Plane takes two UTF-16 units."""
    assert encoding("😀") == "UCS-2"
    assert count("😀" * 35) == 1
    assert count("😀" * 36) == 2
    assert count("a" * 69 + "😀") == 2
