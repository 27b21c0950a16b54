"""The documents stand on their own: they cite files of this repository, which exist, and the
provider table reads like the registry."""

from __future__ import annotations

import re
from pathlib import Path

from worker.provider_specs import SPECS
from worker.providers import PROVIDER_CLASSES

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
#: Copies of upstream documents, cited as such (their own provenance is in SOURCES.md).
UPSTREAM = (ROOT / "tests" / "specs", ROOT / "tests" / "deploy" / "schemas")
SKIPPED_DIRS = {".venv", ".git", "build", "dist", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache"}
TEXT_SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".json", ".cfg", ".txt", ".sh"}
# Written in pieces so that this file does not match itself.
OUTSIDE = re.compile(
    "|".join(["shar" + r"ed/", "DESI" + r"GN(\.md|\s*§|\s+section|\s+\d)", "refer" + r"ence/\w+\.md"])
)
CITED = re.compile(
    r"`((?:producers|worker|tests|docs|deploy)/[^`<>*\s]+|README\.md|pyproject\.toml|Makefile)`"
)


def _repository_texts() -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        parts = set(path.relative_to(ROOT).parts)
        if parts & SKIPPED_DIRS or any(path.is_relative_to(u) for u in UPSTREAM) or not path.is_file():
            continue
        if path.suffix in TEXT_SUFFIXES or path.name in ("Makefile", "Dockerfile"):
            found.append(path)
    return found


def test_no_document_outside_the_repository_is_cited() -> None:
    """No docstring, comment or document cites the design notes or research folders that are not
    part of the repository."""
    hits = []
    for path in _repository_texts():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert hits == []


def test_the_outside_pattern_catches_what_it_must() -> None:
    """The check above can fail: each form of an outside citation is matched."""
    # Assembled from parts, so this file holds no citation of its own for a reader to follow.
    design, shared, reference = "DES" + "IGN", "/work/" + "shared", "refer" + "ence"
    for text in (
        f"see {design} §4",
        f"({design} 7)",
        f"{design} section 4",
        f"{shared}/specs",
        f"{reference}/providers.md §2",
    ):
        assert OUTSIDE.search(text), text
    assert not OUTSIDE.search("the design of the claim script (worker/idempotency.py)")


def test_every_file_the_architecture_cites_exists() -> None:
    """Each path docs/architecture.md names (modules, tests, docs) is a file or directory here."""
    text = ARCHITECTURE.read_text()
    before = text.index("<!-- before -->"), text.index("<!-- /before -->")
    text = text[: before[0]] + text[before[1] :]  # the files a provider touched before may be gone
    cited = sorted(set(CITED.findall(text)))
    assert len(cited) > 100
    missing = [path for path in cited if not (ROOT / path.rstrip("/")).exists()]
    assert missing == []


def _provider_rows() -> list[list[str]]:
    text = ARCHITECTURE.read_text()
    table = text.split("<!-- providers-table -->")[1].split("<!-- /providers-table -->")[0]
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")] for line in table.strip().splitlines()
    ]
    return rows[2:]  # after the header and its rule


def test_the_architecture_provider_table_reads_like_the_registry() -> None:
    """One row per provider of the specs, in their order, with its credential fields and whether
    it takes callbacks and can be polled, as its class says."""
    rows = _provider_rows()
    assert [row[0].strip("`") for row in rows] == list(SPECS)
    for name, credentials, callbacks, polls, _ in rows:
        spec, cls = SPECS[name.strip("`")], PROVIDER_CLASSES[name.strip("`")]
        fields = [*spec.required_credentials, *(f"[{f}]" for f in spec.optional_credentials)]
        assert credentials.startswith(", ".join(fields) or "none"), name
        assert callbacks.startswith("signed") == cls.signs_callbacks, name
        assert (polls == "yes") == cls.polls, name


def test_the_readme_config_example_names_every_provider() -> None:
    """The README's connection example lists the provider names the config accepts."""
    line = next(
        line for line in (ROOT / "README.md").read_text().splitlines() if "provider: twilio  " in line
    )
    assert line.split("#", 1)[1].strip() == " | ".join(SPECS)
