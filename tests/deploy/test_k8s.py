"""deploy/k8s: every manifest valid for a pinned Kubernetes version (kubernetes-validate, strict),
KEDA's ScaledObject valid against its vendored CRD schema, and the operational promises kept:
probes, grace period, disruption budget, autoscaling on the `sms` list, Flower, Secrets, config."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from producers.contract import QUEUE
from worker.config.crypto import Crypto
from worker.config.loader import parse_text, validate
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KEDA_SCHEMA = Path(__file__).parent / "schemas" / "keda-scaledobject-v1alpha1.yaml"
#: The Kubernetes version the manifests are validated against (a supported minor with GA APIs for
#: everything used here: apps/v1, policy/v1, v1). Bump it with the clusters.
KUBERNETES_VERSION = "1.32.0"

Manifest = dict[str, Any]


def load(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return data


@pytest.fixture(scope="module")
def manifests(kustomization: dict[str, Any]) -> list[Manifest]:
    return [doc for name in kustomization["resources"] for doc in load(K8S / name)]


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    [found] = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


def container(deployment: Manifest) -> dict[str, Any]:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = only
    return result


def closed(schema: Any) -> Any:
    """The schema with unknown fields forbidden wherever it lists properties (kubectl's strict validation)."""
    if isinstance(schema, dict):
        schema = {key: closed(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [closed(item) for item in schema]
    return schema


def keda_validator() -> Any:
    return jsonschema.Draft202012Validator(closed(yaml.safe_load(KEDA_SCHEMA.read_text())))


def test_the_kustomization_lists_every_manifest(kustomization: dict[str, Any]) -> None:
    """Every YAML file in deploy/k8s is a resource of the kustomization, and every resource exists."""
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert kustomization["namespace"] == "midcall-sms"


def test_every_kubernetes_resource_is_valid_for_the_pinned_version(manifests: list[Manifest]) -> None:
    """Each built-in resource validates, unknown fields refused, against Kubernetes 1.32's schemas."""
    crds = ("keda.sh/", "monitoring.coreos.com/")
    built_in = [m for m in manifests if not m["apiVersion"].startswith(crds)]
    assert {m["kind"] for m in built_in} == {
        "Namespace", "ConfigMap", "Secret", "Deployment", "PodDisruptionBudget", "Service",
    }  # fmt: skip
    for manifest in built_in:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_kubernetes_check_is_live(manifests: list[Manifest]) -> None:
    """A misspelt field in the worker Deployment fails the same validation."""
    broken = copy.deepcopy(find(manifests, "Deployment", "midcall-sms-worker"))
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 60
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_scaled_object_is_valid_against_kedas_crd_schema(manifests: list[Manifest]) -> None:
    """The ScaledObject validates against KEDA's v1alpha1 schema; a misspelt field would not."""
    scaled = find(manifests, "ScaledObject", "midcall-sms-worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    validator = keda_validator()
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(scaled)]
    assert errors == []
    broken = copy.deepcopy(scaled)
    broken["spec"]["minReplicas"] = 2
    assert not validator.is_valid(broken)


def test_keda_scales_the_workers_on_the_sms_list_and_keeps_two_warm(manifests: list[Manifest]) -> None:
    """KEDA's redis trigger reads LLEN of the queue the producers push to, from the Redis address in
    the worker's environment, and never goes below 2 replicas."""
    spec = find(manifests, "ScaledObject", "midcall-sms-worker")["spec"]
    worker = find(manifests, "Deployment", "midcall-sms-worker")
    assert spec["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert spec["minReplicaCount"] >= 2
    assert spec["maxReplicaCount"] > spec["minReplicaCount"]
    [trigger] = spec["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == QUEUE
    assert trigger["metadata"]["addressFromEnv"] in {e["name"] for e in container(worker)["env"]}
    assert "replicas" not in worker["spec"], "KEDA owns the replica count"


def test_the_worker_pod_drains_longer_than_the_longest_send(manifests: list[Manifest]) -> None:
    """The grace period outlasts a claim wait plus a provider request and a fallback request, and
    the container runs Celery directly (exec form) so SIGTERM reaches it."""
    pod = find(manifests, "Deployment", "midcall-sms-worker")["spec"]["template"]["spec"]
    settings = Settings()
    assert pod["terminationGracePeriodSeconds"] > settings.claim_lease + 2 * settings.provider_timeout
    assert container(find(manifests, "Deployment", "midcall-sms-worker"))["args"][:4] == [
        "celery", "-A", "worker", "worker",
    ]  # fmt: skip


def test_the_worker_probes_use_the_metrics_port(manifests: list[Manifest]) -> None:
    """Startup and liveness ask /healthz, readiness /readyz, on the port the worker serves them on."""
    worker = container(find(manifests, "Deployment", "midcall-sms-worker"))
    env = {e["name"]: e.get("value") for e in worker["env"]}
    [port] = worker["ports"]
    assert port["containerPort"] == int(env["SMS_METRICS_PORT"]) == Settings().metrics_port
    assert env["SMS_METRICS_HOST"] == "0.0.0.0"
    assert worker["startupProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert worker["resources"]["requests"].keys() == {"cpu", "memory"}
    assert "memory" in worker["resources"]["limits"]
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_disruption_budget_covers_the_worker_pods(manifests: list[Manifest]) -> None:
    """The PodDisruptionBudget selects exactly the worker pods and lets one go at a time."""
    budget = find(manifests, "PodDisruptionBudget", "midcall-sms-worker")["spec"]
    labels = find(manifests, "Deployment", "midcall-sms-worker")["spec"]["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert budget["maxUnavailable"] == 1


def test_flower_has_a_deployment_and_a_service(manifests: list[Manifest]) -> None:
    """One Flower replica runs `celery -A worker flower` behind basic auth, reached through a Service."""
    flower = find(manifests, "Deployment", "midcall-sms-flower")
    service = find(manifests, "Service", "midcall-sms-flower")["spec"]
    assert flower["spec"]["replicas"] == 1
    assert service["selector"].items() <= flower["spec"]["template"]["metadata"]["labels"].items()
    assert service["ports"][0]["targetPort"] in {p["name"] for p in container(flower)["ports"]}
    assert container(flower)["args"][:4] == ["celery", "-A", "worker", "flower"]
    auth = next(e for e in container(flower)["env"] if e["name"] == "FLOWER_BASIC_AUTH")
    find(manifests, "Secret", auth["valueFrom"]["secretKeyRef"]["name"])


def test_secrets_hold_the_keys_and_provider_credentials_and_reach_the_worker(
    manifests: list[Manifest],
) -> None:
    """The encryption keys and provider credentials are Secrets the worker reads as environment."""
    worker = container(find(manifests, "Deployment", "midcall-sms-worker"))
    referenced = {source["secretRef"]["name"] for source in worker["envFrom"]}
    assert "SMS_ENCRYPTION_KEYS" in find(manifests, "Secret", "midcall-sms-encryption")["stringData"]
    assert "TWILIO_AUTH_TOKEN" in find(manifests, "Secret", "midcall-sms-providers")["stringData"]
    assert referenced == {"midcall-sms-encryption", "midcall-sms-providers"}


def test_the_config_map_holds_a_config_the_worker_accepts(manifests: list[Manifest]) -> None:
    """The ConfigMap's config.yaml loads with the worker's own loader, and is mounted at SMS_CONFIG_FILE."""
    text = find(manifests, "ConfigMap", "midcall-sms-config")["data"]["config.yaml"]
    config = validate(
        parse_text(text, source="config.yaml"), crypto=Crypto([]), env={"TWILIO_AUTH_TOKEN": "x"}
    )
    assert "agent_abc123" in config.agents
    worker = find(manifests, "Deployment", "midcall-sms-worker")
    mount = next(m for m in container(worker)["volumeMounts"] if m["name"] == "config")
    env = {e["name"]: e.get("value") for e in container(worker)["env"]}
    assert env["SMS_CONFIG_FILE"] == f"{mount['mountPath']}/config.yaml"


def test_kustomize_renders_valid_manifests_when_kubectl_is_installed() -> None:
    """`kubectl kustomize deploy/k8s` (offline) renders the same resources in the namespace, all valid."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: the resources were validated file by file above")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    assert len(docs) == 16
    for doc in docs:
        if doc["kind"] == "ScaledObject":
            assert keda_validator().is_valid(doc)
        elif doc["kind"] == "PrometheusRule":
            pass  # no vendored CRD schema: tests/deploy/test_prometheus.py checks its content
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "midcall-sms"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "midcall-sms"
