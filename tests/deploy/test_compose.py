"""deploy/compose.yaml: valid against the Compose Specification's JSON Schema (vendored), and
shaped for operations: Redis with AOF, a scalable worker, Flower."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"


def seconds(duration: str) -> float:
    """A Compose duration such as `60s` or `1m30s`."""
    total, number = 0.0, ""
    for char in duration:
        if char.isdigit() or char == ".":
            number += char
        else:
            total += float(number) * {"h": 3600, "m": 60, "s": 1}[char]
            number = ""
    return total


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_compose_file_is_valid_against_the_compose_spec(compose: dict[str, Any], validator: Any) -> None:
    """Every key and value of deploy/compose.yaml is allowed by the Compose Specification."""
    errors = sorted(validator.iter_errors(compose), key=str)
    assert errors == [], "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_schema_check_is_live(compose: dict[str, Any], validator: Any) -> None:
    """A misspelt service key fails the same validation."""
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker"]["stop_grace_periods"] = "60s"
    assert not validator.is_valid(broken)


def test_redis_keeps_the_queue_across_restarts(compose: dict[str, Any]) -> None:
    """Redis runs with AOF (fsync every second) and noeviction, its data on a named volume."""
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"])
    for option in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
        assert option in command
    assert "redis-data:/data" in redis["volumes"]
    assert "redis-data" in compose["volumes"]


def test_the_worker_scales_and_drains(compose: dict[str, Any]) -> None:
    """The worker has no container name and no host port (so `--scale worker=N` works), reaches Redis
    by service name, gets its config file, and a stop grace period longer than the longest send."""
    worker = compose["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["build"]["target"] == "worker"
    assert worker["environment"]["SMS_REDIS_URL"] == "redis://redis:6379/0"
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    [config] = worker["configs"]
    assert config["target"] == worker["environment"]["SMS_CONFIG_FILE"]
    assert (COMPOSE.parent / compose["configs"][config["source"]]["file"]).is_file()
    settings = Settings()
    longest_send = settings.claim_lease + 2 * settings.provider_timeout
    assert seconds(worker["stop_grace_period"]) > longest_send
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"


def test_flower_runs_the_app_and_listens_on_loopback_only(compose: dict[str, Any]) -> None:
    """Flower is built from the same Dockerfile (target `flower`) and published on 127.0.0.1 only."""
    flower = compose["services"]["flower"]
    assert flower["build"]["target"] == "flower"
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    assert flower["environment"]["SMS_REDIS_URL"] == "redis://redis:6379/0"
