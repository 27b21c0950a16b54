"""The one message every measurement sends, and the config file that makes our workers send it.

Our pipeline, the bare Celery task and the direct call all make the same request to the same fake
Twilio: `POST /2010-04-01/Accounts/<sid>/Messages.json` with To, From and a one-segment Body.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from producers.contract import CallContext
from worker.testing.twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

ACCOUNT_SID = DEFAULT_ACCOUNT_SID
AUTH_TOKEN = DEFAULT_AUTH_TOKEN
SENDER = "+15005550006"  # Twilio's test "From" that passes validation
CALLER = "+14155551234"
TEMPLATE = "Your appointment is confirmed for {date} at {time}. Reply STOP to opt out."
VARIABLES = {"date": "March 10", "time": "2:00 PM"}
BODY = TEMPLATE.format(**VARIABLES)
#: agents whose connection is the fake answering at once, and the one answering after the latency
AGENT_FAST = "bench_fast"
AGENT_SLOW = "bench_slow"


def call(call_id: str) -> CallContext:
    """An inbound call; every send of the benchmark has its own, as every live call would."""
    return CallContext(call_id=call_id, direction="inbound", from_number=CALLER, to_number=SENDER)


def messages_url(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


def form() -> dict[str, str]:
    """The create-message form the baselines post (the SDK adds ValidityPeriod, nothing more)."""
    return {"To": CALLER, "From": SENDER, "Body": BODY}


def _connection(label: str, url: str) -> dict[str, Any]:
    return {
        "label": label,
        "provider": "twilio",
        "default": label == "fast",
        "from_number": SENDER,
        "credentials": {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN},
        "api_base_url": url,
        # Every policy on, none binding: the claim still runs the GCRA and the recipient cap.
        "messages_per_second": 10_000,
    }


def _agent(connection: str) -> dict[str, Any]:
    sms = {
        "enabled": True,
        "provider": "twilio",
        "connection": connection,
        "templates": {"booking": TEMPLATE},
        "max_per_call": 5,
        "max_per_recipient": {"count": 100_000, "window_seconds": 60},
    }
    return {"voice_tools": {"sms_mid_call": sms}}


def write_config(path: Path, *, fast_url: str, slow_url: str) -> Path:
    """The workers' SMS_CONFIG_FILE: a connection per fake, an agent per connection."""
    data = {
        "connections": [_connection("fast", fast_url), _connection("slow", slow_url)],
        "agents": {AGENT_FAST: _agent("fast"), AGENT_SLOW: _agent("slow")},
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
