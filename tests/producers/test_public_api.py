"""The public face of `producers`: `__all__` is importable, documented, complete, and the two
clients offer the same calls with the same arguments."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import producers
from producers import SmsClient, SyncSmsClient

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_table() -> set[str]:
    """The names in the README's table of what `from producers import …` gives."""
    text = README.read_text()
    start = text.index("What `from producers import …` gives")
    table = text[start : text.index("\n\n", text.index("| name | what |", start))]
    return {name for row in table.splitlines()[3:] for name in re.findall(r"`(\w+)`", row.split("|")[1])}


def test_every_name_in_all_is_importable_and_documented() -> None:
    """Each name of `__all__` is an attribute of the package, listed in the README's table, and
    (when it is a class or function) carries a docstring."""
    for name in producers.__all__:
        value = getattr(producers, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{name} has no docstring"
    assert set(producers.__all__) == _readme_table()


def test_nothing_public_is_left_out_of_all() -> None:
    """Every public name the package itself defines or re-exports (not its submodules) is in
    `__all__`, and the README's examples import only names from it."""
    public = {
        name
        for name, value in vars(producers).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == set(producers.__all__)
    imported = re.findall(r"^from producers import (.+)$", README.read_text(), flags=re.MULTILINE)
    names = {n.strip() for line in imported for n in line.split(",")}
    assert names and names <= set(producers.__all__)


def test_the_two_clients_offer_the_same_calls_with_the_same_arguments() -> None:
    """`SyncSmsClient` mirrors `SmsClient`: the same public methods (only `close` for `aclose`)
    with the same parameters and defaults, so code moves between them unchanged."""
    shared = ("send", "wait", "wait_delivery", "events", "enqueue")
    for name in shared:
        async_params = inspect.signature(getattr(SmsClient, name)).parameters
        sync_params = inspect.signature(getattr(SyncSmsClient, name)).parameters
        assert list(async_params) == list(sync_params), name
        for param in async_params:
            assert async_params[param].default == sync_params[param].default, (name, param)
            assert async_params[param].kind == sync_params[param].kind, (name, param)
    methods = {
        cls: {n for n in dir(cls) if not n.startswith("_")} - {"aclose", "close"}
        for cls in (SmsClient, SyncSmsClient)
    }
    assert methods[SmsClient] == methods[SyncSmsClient]
