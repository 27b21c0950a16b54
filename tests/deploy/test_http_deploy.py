"""deploy/ runs the HTTP service (`midcall-sms serve`) from the worker's image: in compose, and in
Kubernetes with probes, a graceful stop, a Service, a PodDisruptionBudget and an Ingress example."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.deploy.test_compose import COMPOSE, seconds
from tests.deploy.test_k8s import K8S, KUBERNETES_VERSION, Manifest, container, find, load
from worker.http.serve import GRACEFUL_SHUTDOWN
from worker.settings import Settings


@pytest.fixture(scope="module")
def manifests() -> list[Manifest]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in load(K8S / name)]


def test_the_http_deployment_runs_serve_from_the_worker_image(manifests: list[Manifest]) -> None:
    """Same image as the worker, command `midcall-sms serve`, listening on 0.0.0.0:8080, with the
    config, the provider secrets and the API tokens, at least two replicas."""
    http = find(manifests, "Deployment", "midcall-sms-http")
    worker = find(manifests, "Deployment", "midcall-sms-worker")
    pod = container(http)
    assert pod["image"] == container(worker)["image"]
    assert pod["args"] == ["midcall-sms", "serve"]
    env = {e["name"]: e for e in pod["env"]}
    assert env["SMS_HTTP_HOST"]["value"] == "0.0.0.0"
    [port] = pod["ports"]
    assert port["containerPort"] == int(env["SMS_HTTP_PORT"]["value"]) == Settings().http_port
    public = env["SMS_PUBLIC_URL"]["valueFrom"]["configMapKeyRef"]
    assert find(manifests, "ConfigMap", public["name"])["data"][public["key"]].startswith("https://")
    secrets = {source["secretRef"]["name"] for source in pod["envFrom"]}
    assert "SMS_API_TOKENS" in find(manifests, "Secret", "midcall-sms-api")["stringData"]
    assert {"midcall-sms-providers", "midcall-sms-api"} <= secrets
    assert http["spec"]["replicas"] >= 2


def test_the_http_pods_are_probed_and_stop_gracefully(manifests: list[Manifest]) -> None:
    """Startup and liveness ask /healthz, readiness /readyz (Redis); preStop waits for the endpoint
    removal, and the grace period outlasts it plus uvicorn's own drain."""
    http = find(manifests, "Deployment", "midcall-sms-http")
    pod = container(http)
    name = pod["ports"][0]["name"]
    assert pod["startupProbe"]["httpGet"] == {"path": "/healthz", "port": name}
    assert pod["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": name}
    assert pod["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": name}
    pre_stop = pod["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert http["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > pre_stop + GRACEFUL_SHUTDOWN
    assert pod["securityContext"]["readOnlyRootFilesystem"] is True


def test_service_and_disruption_budget_select_the_http_pods(manifests: list[Manifest]) -> None:
    """The Service routes to the pods' named port; the budget keeps one replica during drains."""
    labels = find(manifests, "Deployment", "midcall-sms-http")["spec"]["template"]["metadata"]["labels"]
    service = find(manifests, "Service", "midcall-sms-http")["spec"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] == "http"
    budget = find(manifests, "PodDisruptionBudget", "midcall-sms-http")["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert budget["minAvailable"] == 1
    worker_labels = find(manifests, "Deployment", "midcall-sms-worker")["spec"]["template"]["metadata"][
        "labels"
    ]
    assert not budget["selector"]["matchLabels"].items() <= worker_labels.items()


def test_the_ingress_example_is_valid_and_routes_the_webhooks(manifests: list[Manifest]) -> None:
    """The example Ingress validates for the pinned Kubernetes version, serves the public URL's host
    and sends /v1/webhooks/ to the service's port; a misspelt field would fail."""
    [ingress] = load(K8S / "examples" / "ingress.yaml")
    kubernetes_validate.validate(ingress, KUBERNETES_VERSION, strict=True)
    public = find(manifests, "ConfigMap", "midcall-sms-env")["data"]["PUBLIC_URL"]
    [rule] = ingress["spec"]["rules"]
    assert public == f"https://{rule['host']}"
    paths = {p["path"]: p["backend"]["service"] for p in rule["http"]["paths"]}
    assert paths["/v1/webhooks/"] == {"name": "midcall-sms-http", "port": {"name": "http"}}
    broken = copy.deepcopy(ingress)
    broken["spec"]["rules"][0]["hosts"] = ["x"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_compose_runs_the_http_service_from_the_worker_image() -> None:
    """In compose: the worker's image and target, `midcall-sms serve` on 0.0.0.0:8080 published on
    loopback, the same config file, a /readyz health check and a grace period past uvicorn's drain."""
    compose: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    http, worker = compose["services"]["http"], compose["services"]["worker"]
    assert http["image"] == worker["image"] and http["build"] == worker["build"]
    assert http["command"] == ["midcall-sms", "serve"]
    assert http["environment"]["SMS_HTTP_HOST"] == "0.0.0.0"
    assert http["ports"] == [f"127.0.0.1:{Settings().http_port}:{http['environment']['SMS_HTTP_PORT']}"]
    assert http["configs"] == worker["configs"]
    assert "/readyz" in " ".join(http["healthcheck"]["test"])
    assert seconds(http["stop_grace_period"]) > GRACEFUL_SHUTDOWN
    assert Path(COMPOSE).is_file()
