"""The provider registry: specs, classes, and who may know provider names."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import fakeredis
import pytest

import worker.providers
from worker.config.models import Connection
from worker.provider_specs import SPECS, ProviderSpec
from worker.providers import PROVIDER_CLASSES, ProviderPool, SmsProvider, registry
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
WORKER = ROOT / "worker"
#: The modules that are a provider: each may name itself.
PROVIDER_MODULES = {
    Path(spec.implementation.partition(":")[0].replace(".", "/") + ".py") for spec in SPECS.values()
}
#: Comparisons with a provider name that are not branches on a provider, with the reason.
ALLOWED_COMPARISONS = {
    # the benchmark reads the Twilio run's webhook metrics (a label filter, not provider behaviour)
    Path("worker/bench/receipts.py"),
}


def _provider_subclasses() -> dict[str, type[SmsProvider]]:
    found: dict[str, type[SmsProvider]] = {}
    for info in pkgutil.iter_modules(worker.providers.__path__, "worker.providers."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, SmsProvider) and "spec" in vars(value):
                found[value.name] = value
    return found


def test_every_spec_has_its_class_and_every_provider_class_a_spec() -> None:
    """The registry loads one class per spec, each declaring that spec; no provider class in
    `worker/providers/` is left out of it."""
    assert list(PROVIDER_CLASSES) == list(SPECS)
    for name, cls in PROVIDER_CLASSES.items():
        assert cls.spec is SPECS[name]
        assert cls.name == name
    assert _provider_subclasses() == dict(PROVIDER_CLASSES)


def test_a_spec_whose_class_declares_another_spec_is_refused() -> None:
    """A spec pointing at another provider's class does not load (a copy-paste slip in a new spec)."""
    wrong = ProviderSpec(name="twilio2", implementation="worker.providers.twilio:TwilioProvider", summary="x")
    with pytest.raises(TypeError, match="another spec"):
        registry._load(wrong)
    not_a_provider = ProviderSpec(name="x", implementation="worker.providers.base:MessageLimits", summary="x")
    with pytest.raises(TypeError, match="not an SmsProvider"):
        registry._load(not_a_provider)


def test_receipt_and_callback_providers_follow_the_classes_flags() -> None:
    """Which providers have receipts and take callbacks is read from each class, not listed by hand."""
    assert {n for n, c in PROVIDER_CLASSES.items() if c.callbacks or c.polls} == registry.RECEIPT_PROVIDERS
    assert {n for n, c in PROVIDER_CLASSES.items() if c.signs_callbacks} == set(registry.CALLBACK_PROVIDERS)
    assert "custom" not in registry.RECEIPT_PROVIDERS  # a custom endpoint has neither


@pytest.mark.parametrize("name", list(SPECS))
def test_the_pool_builds_each_provider_through_its_class(name: str) -> None:
    """`ProviderPool` builds every provider by its class's `build`, with the pool's resources."""
    spec = SPECS[name]
    connection = Connection(
        label=f"{name} conn",
        provider=name,
        credentials={field: "x" * 8 for field in spec.required_credentials},
        custom_api_url="https://sms.example.com/send" if spec.endpoint_url else None,
    )
    pool = ProviderPool(Settings(), fakeredis.FakeRedis())
    try:
        provider = pool.get(connection)
        assert type(provider) is PROVIDER_CLASSES[name]
        assert pool.get(connection) is provider
    finally:
        pool.close()


def test_a_connection_is_validated_against_its_spec() -> None:
    """Credential fields, the endpoint URL and the public key are checked against the provider's
    spec; an unknown provider name is refused without echoing it."""
    with pytest.raises(ValueError, match="missing api_key for provider telnyx"):
        Connection(label="T", provider="telnyx")
    with pytest.raises(ValueError, match="unknown field"):
        Connection(label="T", provider="telnyx", credentials={"api_key": "k", "auth_token": "t"})
    assert Connection(label="T", provider="telnyx", credentials={"api_key": "k", "messaging_profile_id": "p"})
    with pytest.raises(ValueError, match="custom_api_url: required for provider custom"):
        Connection(label="C", provider="custom")
    with pytest.raises(ValueError, match="not a provider name") as refused:
        Connection(label="S", provider="sk_live_secretish")
    assert "sk_live_secretish" not in str(refused.value).split("input_value")[0]


def test_config_does_not_import_providers() -> None:
    """No module of `worker.config` imports `worker.providers` (the arrow runs one way: providers
    use the config's models), checked in the source and in a fresh interpreter."""
    for path in sorted((WORKER / "config").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            assert not any(n.startswith("worker.providers") for n in names), f"{path.name} imports {names}"
    modules = [f"worker.config.{p.stem}" for p in sorted((WORKER / "config").glob("*.py"))]
    code = (
        f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.startswith('worker.providers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _name_comparisons(path: Path, shown: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        constants: list[object] = []
        for operand in operands:
            if isinstance(operand, ast.Constant):
                constants.append(operand.value)
            elif isinstance(operand, ast.Tuple | ast.List | ast.Set):
                constants += [e.value for e in operand.elts if isinstance(e, ast.Constant)]
        named = [c for c in constants if isinstance(c, str) and c in SPECS]
        if named:
            found.append(f"{shown}:{node.lineno} compares with {named}")
    return found


def test_no_module_outside_the_providers_branches_on_a_provider_name() -> None:
    """No `== "twilio"` (or `in ("custom", …)`) outside each provider's own module: the rest of
    the code asks the registry and the provider class."""
    found: list[str] = []
    for path in sorted(WORKER.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative in PROVIDER_MODULES or relative in ALLOWED_COMPARISONS:
            continue
        found += _name_comparisons(path, relative)
    assert found == []


def test_the_scan_finds_a_branch_on_a_provider_name(tmp_path: Path) -> None:
    """The scan above can fail: it reports a comparison with a provider name."""
    sample = tmp_path / "sample.py"
    sample.write_text('def f(p: str) -> int:\n    return 1 if p == "plivo" or p in ("x", "telnyx") else 0\n')
    assert len(_name_comparisons(sample, Path("sample.py"))) == 2


def test_the_cli_help_names_every_provider_and_its_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    """`config connection add --help` lists the providers and their credential fields from the specs."""
    from worker.cli import parser

    with pytest.raises(SystemExit):
        parser().parse_args(["config", "connection", "add", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for spec in SPECS.values():
        assert f"{spec.name}: {spec.summary}" in text
        assert spec.credentials_help() in text
