"""Strict `{name}` templates.

Only bare identifiers are placeholders: `{0.__class__}`, `{a.b}`, `{a[0]}`, `{a!r}` and `{a:>10}`
are refused, never evaluated, and a value is inserted literally (a value of `{link}` stays `{link}`).
`{{` and `}}` are literal braces. `str.format` is not used: it evaluates attribute and index lookups.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

from producers.contract import VariableValue

_FORMATTER = string.Formatter()


class TemplateError(ValueError):
    """The template is malformed, or a variable it needs is missing."""


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: literal text and placeholder names, in order."""

    parts: tuple[tuple[str, str | None], ...]

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(name for _, name in self.parts if name is not None)

    def render(self, variables: Mapping[str, VariableValue]) -> str:
        missing = sorted(self.fields - variables.keys())
        if missing:
            raise TemplateError(f"missing variable(s): {', '.join(missing)}")
        out: list[str] = []
        for literal, name in self.parts:
            out.append(literal)
            if name is not None:
                out.append(_text(variables[name]))
        return "".join(out)


def _text(value: VariableValue) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TemplateError(f"variable values must be text or numbers, not {type(value).__name__}")
    return str(value)


def parse(source: str) -> Template:
    """Parse `source`, refusing anything but `{identifier}` placeholders."""
    try:
        pieces = list(_FORMATTER.parse(source))
    except ValueError as exc:  # unbalanced braces
        raise TemplateError(f"malformed template: {exc}") from None
    parts: list[tuple[str, str | None]] = []
    for literal, field, format_spec, conversion in pieces:
        if field is None:
            parts.append((literal, None))
            continue
        if not field.isidentifier() or conversion is not None or format_spec:
            shown = (
                "{"
                + field
                + (f"!{conversion}" if conversion else "")
                + (f":{format_spec}" if format_spec else "")
                + "}"
            )
            raise TemplateError(f"invalid placeholder {shown}: only {{name}} placeholders are allowed")
        parts.append((literal, field))
    return Template(tuple(parts))


def render(source: str, variables: Mapping[str, VariableValue]) -> str:
    return parse(source).render(variables)
