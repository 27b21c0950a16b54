"""deploy/prometheus/rules.yaml: valid for promtool, one unit test per alert that fires it, the
same groups in the Kubernetes PrometheusRule, and every alert explained in docs/operations.md.

promtool comes from Debian's `prometheus` package; `make test` installs it when it is missing
(.ci/install-promtool).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "rules.test.yaml"
PROMETHEUS_RULE = ROOT / "deploy" / "k8s" / "prometheusrule.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: `make test` installs it (Debian package prometheus)")
    return subprocess.run([found, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


def alerts() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"] if "alert" in rule]


def test_promtool_accepts_the_rules() -> None:
    """`promtool check rules` finds every rule and no error."""
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_the_rule_unit_tests_pass() -> None:
    """`promtool test rules` passes every case of rules.test.yaml."""
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_case_that_fires_it() -> None:
    """Each alert is expected to fire in at least one case (and the cases name no unknown alert)."""
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    checks = [check for case in cases for check in case.get("alert_rule_test", [])]
    fired = {check["alertname"] for check in checks if check["exp_alerts"]}
    names = {rule["alert"] for rule in alerts()}
    assert fired == names
    assert {check["alertname"] for check in checks} <= names


def test_the_unit_tests_are_live(tmp_path: Path) -> None:
    """The same cases fail against a rule file whose failure-ratio threshold is ten times higher."""
    text = RULES.read_text()
    assert text.count("  ) > 0.05\n") == 1
    (tmp_path / "rules.yaml").write_text(text.replace("  ) > 0.05\n", "  ) > 0.5\n"))
    shutil.copy(RULE_TESTS, tmp_path / "rules.test.yaml")
    result = promtool("test", "rules", "rules.test.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert "MidcallSmsProviderFailureRatioHigh" in result.stdout + result.stderr


def test_every_alert_has_a_severity_a_summary_and_a_description() -> None:
    for rule in alerts():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_the_prometheus_rule_carries_the_same_groups() -> None:
    """deploy/k8s/prometheusrule.yaml is the rule file as a Prometheus Operator resource, listed in
    the kustomization."""
    resource = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert (resource["apiVersion"], resource["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert set(resource) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(resource["spec"]) == {"groups"}
    assert resource["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    kustomization = yaml.safe_load((ROOT / "deploy" / "k8s" / "kustomization.yaml").read_text())
    assert "prometheusrule.yaml" in kustomization["resources"]


def test_every_alert_is_explained_in_the_operations_guide() -> None:
    """docs/operations.md has a section per alert: what it means and what to do."""
    text = OPERATIONS.read_text()
    for rule in alerts():
        assert f"#### `{rule['alert']}`" in text, rule["alert"]


def test_the_example_prometheus_config_is_valid_and_loads_the_rules() -> None:
    """`promtool check config` accepts deploy/prometheus/prometheus.yml (which loads rules.yaml),
    and it scrapes the workers under the job name the worker alerts select."""
    config = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    result = promtool("check", "config", config.name, cwd=config.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {job["job_name"] for job in yaml.safe_load(config.read_text())["scrape_configs"]}
    assert "midcall-sms-worker" in jobs
    assert all('job="midcall-sms-worker"' in rule["expr"] for rule in alerts() if "up{" in rule["expr"])
