"""worker/tracing.py: the tracer provider is installed from OpenTelemetry's variables only when
tracing is configured, never over one the process has already."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def configure_in_a_fresh_process(env: dict[str, str], preset: bool = False) -> str:
    """`tracing.configure(Settings())` in a new interpreter; prints its answer, the provider's
    class and its service name."""
    code = textwrap.dedent(
        f"""
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        if {preset!r}:
            trace.set_tracer_provider(TracerProvider())
        from worker import tracing
        from worker.settings import Settings
        configured = tracing.configure(Settings())
        provider = trace.get_tracer_provider()
        resource = getattr(provider, "resource", None)
        print(configured, type(provider).__name__, resource.attributes["service.name"] if resource else "-")
        tracing.shutdown()
        """
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SMS_"))} | env
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False, env=environ
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_nothing_is_installed_without_otel_variables() -> None:
    assert configure_in_a_fresh_process({}) == "False ProxyTracerProvider -"


def test_an_exporter_or_an_endpoint_installs_the_sdk_provider() -> None:
    """`OTEL_TRACES_EXPORTER` or an OTLP endpoint turns tracing on; the service is called
    `midcall-sms-worker` unless `OTEL_SERVICE_NAME` says otherwise."""
    assert configure_in_a_fresh_process({"OTEL_TRACES_EXPORTER": "console"}) == (
        "True TracerProvider midcall-sms-worker"
    )
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SERVICE_NAME": "sms-eu"}
    assert configure_in_a_fresh_process(env) == "True TracerProvider sms-eu"


def test_disabled_or_already_configured_is_left_alone() -> None:
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}
    assert configure_in_a_fresh_process(env) == "False ProxyTracerProvider -"
    preset = configure_in_a_fresh_process({"OTEL_TRACES_EXPORTER": "console"}, preset=True)
    assert preset.startswith("False TracerProvider")
