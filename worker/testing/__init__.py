"""Fake SMS providers on real HTTP (127.0.0.1), for integration tests, the demo and the benchmark.

    with FakeTwilio(account_sid, auth_token, latency=0.1) as twilio:
        client.api.base_url = twilio.url
        twilio.script(Error(20429, status=429, headers={"Retry-After": "2"}), Hang())
        ...
        assert twilio.violations == []          # every request matched Twilio's OpenAPI spec
        assert len(twilio.accepted) == 1        # exactly one SMS went out

Each fake answers like the real provider (status, body shape, codes, magic numbers) and records every
request; `script()` injects faults for the next send requests. Run one from a shell with
`python -m worker.testing twilio --port 8081 --latency-ms 100`.

The provider fakes also call back like the provider (`worker.testing.webhooks`). A send that carries
a callback URL (Twilio `StatusCallback`, Plivo `url` + `method`, Telnyx `webhook_url`) gets status
callbacks from the fake's own loop, signed as the provider signs (Twilio `X-Twilio-Signature`, Plivo
V2 + V3, Telnyx Ed25519 with `FakeTelnyx.webhook_public_key`), scripted per recipient; the status GET
endpoint (`message_path(id)`; Twilio `.../Messages/{Sid}.json`, Plivo `.../Message/{uuid}/`, Telnyx
`/v2/messages/{id}`) reports the same progress, with or without a URL:

    twilio.receipts_for("+14155550100", Receipts.undelivered(30007))            # sent → undelivered
    twilio.receipts_for("+14155550101", Receipts.delivered().out_of_order().twice())
    twilio.receipts_for("+14155550102", Receipts.delivered().before_answer())   # before the REST answer
    twilio.receipts_for("+14155550103", Receipts.never())                       # only polling finds it
    twilio.receipts_for("+14155550104", Receipts.delivered().with_forged_signature())
    telnyx.receipts_for("+14155550105", Receipts.delivered().with_stale_timestamp())
    telnyx.default_receipts = Receipts.unconfirmed().delayed(0.5, gap=0.2)     # everyone else
    ...send...
    callbacks = twilio.wait_for_callbacks(2)             # [Callback(status="sent", response_status=204), …]
    twilio.message(sid)["status"]                        # what the GET endpoint answers now
    twilio.send_inbound(url, from_="+14155550100", to="+15005550006", body="STOP")  # OptOutType=STOP
    plivo.send_inbound(url, from_="+14155550100", to="+14155550000", text="STOP")
    telnyx.send_inbound(url, from_="+14155550100", to="+14155550000", text="STOP")  # message.received
"""

from worker.testing.actions import Action, Delay, Drop, Error, Hang, Reply
from worker.testing.custom import FakeCustomEndpoint
from worker.testing.exchange import AcceptedMessage, RecordedRequest, Response
from worker.testing.plivo import FakePlivo
from worker.testing.server import FakeServer
from worker.testing.telnyx import FakeTelnyx
from worker.testing.twilio import FakeTwilio
from worker.testing.webhooks import Callback, Receipts, Webhook, WebhookFake

__all__ = [
    "AcceptedMessage",
    "Action",
    "Callback",
    "Delay",
    "Drop",
    "Error",
    "FakeCustomEndpoint",
    "FakePlivo",
    "FakeServer",
    "FakeTelnyx",
    "FakeTwilio",
    "Hang",
    "Receipts",
    "RecordedRequest",
    "Reply",
    "Response",
    "Webhook",
    "WebhookFake",
]
