"""`python -m worker.testing`: one fake in the foreground, its URL on the first line of stdout."""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
import time

import httpx
import pytest

from worker.testing.twilio import DEFAULT_ACCOUNT_SID


def _start(*args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.testing", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    return process, url


def _stop(process: subprocess.Popen[str], signum: int) -> tuple[int, str]:
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=10)
    return process.returncode, stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_twilio_fake_serves_until_signalled(signum: int) -> None:
    """The Twilio fake prints its URL, answers with the configured latency and exits 0 on the signal."""
    process, url = _start(
        "twilio", "--port", "0", "--latency-ms", "100", "--no-validate", "--auth-token", "tok"
    )
    try:
        assert url.startswith("http://127.0.0.1:")
        started = time.monotonic()
        response = httpx.post(
            f"{url}/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json",
            data={"To": "+15005550006", "From": "+15005550006", "Body": "hi"},
            auth=(DEFAULT_ACCOUNT_SID, "tok"),
        )
        assert response.status_code == 201 and time.monotonic() - started >= 0.1
    finally:
        returncode, stderr = _stop(process, signum)
    assert (returncode, stderr) == (0, "")


def test_custom_fake_takes_required_headers() -> None:
    """`--header` makes the custom fake require that header."""
    process, url = _start("custom", "--header", "X-Api-Key: s3cret")
    try:
        body = {"to": "+14155550101", "message": "hi"}
        assert httpx.post(f"{url}/sms", json=body, headers={"X-Api-Key": "s3cret"}).status_code == 200
        assert httpx.post(f"{url}/sms", json=body).status_code == 401
    finally:
        returncode, stderr = _stop(process, signal.SIGTERM)
    assert returncode == 0 and "1 contract violations" in stderr


def test_telnyx_fake_prints_its_webhook_public_key() -> None:
    """The Telnyx fake's second line is `webhook_public_key=` + the 32-byte key in base64."""
    process, url = _start("telnyx", "--no-validate")
    try:
        assert process.stdout is not None
        name, _, key = process.stdout.readline().strip().partition("=")
        assert url.startswith("http://127.0.0.1:") and name == "webhook_public_key"
        assert len(base64.b64decode(key, validate=True)) == 32
    finally:
        returncode, stderr = _stop(process, signal.SIGTERM)
    assert (returncode, stderr) == (0, "")
