"""Strict `{name}` templates: placeholders only, never evaluated, values inserted literally."""

from __future__ import annotations

from typing import Any

import pytest

from worker import templates
from worker.templates import TemplateError, parse, render


class Exploding:
    """A value whose attributes, items and formatting must never be touched by a template."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"attribute {name} was evaluated")

    def __getitem__(self, key: Any) -> Any:
        raise AssertionError(f"item {key!r} was evaluated")

    def __format__(self, spec: str) -> str:
        raise AssertionError("the value was formatted")


def test_renders_named_placeholders() -> None:
    """`{name}` placeholders are replaced by their variables' values, numbers included."""
    source = "Your appointment is confirmed for {date} at {time}. Details: {link} (#{n}, {price})"
    variables: dict[str, Any] = {
        "date": "March 10",
        "time": "2:00 PM",
        "link": "https://acme.example/b/42",
        "n": 7,
        "price": 9.5,
    }
    assert render(source, variables) == (
        "Your appointment is confirmed for March 10 at 2:00 PM. Details: https://acme.example/b/42 (#7, 9.5)"
    )


def test_a_placeholder_may_repeat_and_unused_variables_are_ignored() -> None:
    """The same placeholder may appear twice, and extra variables do not matter."""
    assert render("{a}-{a}", {"a": "x", "unused": "y"}) == "x-x"


def test_text_without_placeholders_is_unchanged() -> None:
    """A template without placeholders renders to itself."""
    assert (
        render("Reset your password at https://acme.example/r", {})
        == "Reset your password at https://acme.example/r"
    )


def test_doubled_braces_are_literal_braces() -> None:
    """`{{` and `}}` render as single literal braces and are not placeholders."""
    assert render("{{code}} is {code}; {{}}", {"code": "42"}) == "{code} is 42; {}"
    assert parse("{{name}}").fields == frozenset()


def test_fields_lists_the_placeholder_names() -> None:
    """A parsed template knows its placeholder names."""
    assert parse("{date} at {time} ({date})").fields == frozenset({"date", "time"})


@pytest.mark.parametrize(
    "source",
    [
        "{0.__class__}",
        "{a.b}",
        "{a[0]}",
        "{a!r}",
        "{a!s}",
        "{a:>10}",
        "{a:{b}}",
        "{}",
        "{0}",
        "{ a }",
        "{a-b}",
    ],
)
def test_non_identifier_placeholders_are_refused(source: str) -> None:
    """Attribute, index, conversion, format-spec, positional and empty placeholders are refused."""
    with pytest.raises(TemplateError, match=r"only \{name\} placeholders are allowed"):
        parse(source)


@pytest.mark.parametrize("source", ["{a.__class__}", "{a[0]}", "{a!r}", "{a:>10}"])
def test_refused_placeholders_are_never_evaluated(source: str) -> None:
    """Rendering a refused placeholder raises before any attribute, item or format is evaluated."""
    with pytest.raises(TemplateError):
        render(source, {"a": Exploding()})  # type: ignore[dict-item]


def test_the_error_shows_the_refused_placeholder() -> None:
    """The error for a refused placeholder shows it, so the config author can find it."""
    with pytest.raises(TemplateError, match=r"invalid placeholder \{a:>10\}"):
        parse("Hi {a:>10}")


@pytest.mark.parametrize("source", ["{", "}", "Hi {name", "Hi name}", "{a}}", "{{a}", "{a!}"])
def test_unbalanced_braces_are_refused(source: str) -> None:
    """A template with unbalanced braces is refused as malformed."""
    with pytest.raises(TemplateError):
        parse(source)


def test_template_error_is_a_value_error() -> None:
    """TemplateError is a ValueError, so callers validating input can catch it as one."""
    assert issubclass(TemplateError, ValueError)


@pytest.mark.parametrize("value", ["{other}", "{0.__class__}", "{link!r}", "{{x}}", "{"])
def test_values_are_inserted_literally_and_not_rendered_again(value: str) -> None:
    """A value that looks like a placeholder is inserted as is, never rendered a second time."""
    assert render("A {a} B {other}", {"a": value, "other": "OTHER"}) == f"A {value} B OTHER"


def test_missing_variables_are_all_named() -> None:
    """Every missing variable is named in the error, not only the first."""
    with pytest.raises(TemplateError, match="missing variable") as info:
        render("{date} {time} {link} {name}", {"name": "Bo"})
    message = str(info.value)
    for name in ("date", "time", "link"):
        assert name in message
    assert "name" not in message.replace("variable", "")


@pytest.mark.parametrize("value", [True, False, None, ["x"], {"x": 1}, b"bytes"], ids=repr)
def test_values_other_than_text_or_numbers_are_refused(value: Any) -> None:
    """Booleans, None, lists, dicts and bytes are refused as variable values."""
    with pytest.raises(TemplateError, match="text or numbers"):
        render("{a}", {"a": value})


def test_render_is_parse_then_render() -> None:
    """The module-level render gives the same text as parsing once and rendering the template."""
    template = templates.parse("Code {code}")
    assert template.render({"code": 1234}) == render("Code {code}", {"code": 1234}) == "Code 1234"
