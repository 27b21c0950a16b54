"""An inbound text (a reply to the agent's number), as the HTTP service hands it on.

The service verifies the provider's signature and parses the provider's fields into an
`InboundMessage`; what to do with it (opt-out keywords) is not decided here. Numbers are E.164
and the text is the customer's: neither is ever logged or stored in clear (`describe` gives the
form that may be).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from producers.contract import mask_number


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One text received on a connection's number."""

    provider: str
    #: the connection whose webhook URL received it (`Connection.connection_id`)
    connection_id: str
    #: the customer who wrote (E.164)
    from_number: str
    #: our number it was sent to (E.164)
    to_number: str
    text: str
    #: the provider's own reading of the text, when it gives one (Twilio `OptOutType`: STOP,
    #: START, HELP); None otherwise
    keyword_hint: str | None = None
    #: the provider's id of the inbound message (Twilio `MessageSid`, Plivo `MessageUUID`, Telnyx
    #: `data.payload.id`), for deduplicating the provider's retries
    message_id: str | None = None

    def describe(self) -> dict[str, Any]:
        """The message as logs and audit records may hold it: numbers masked, the text as its
        length and a hash."""
        return {
            "provider": self.provider,
            "connection_id": self.connection_id,
            "from": mask_number(self.from_number),
            "to": mask_number(self.to_number),
            "text_length": len(self.text),
            "text_sha256": hashlib.sha256(self.text.encode()).hexdigest()[:16],
            "keyword_hint": self.keyword_hint,
            "message_id": self.message_id,
        }


#: the stream where received texts are recorded for the audit trail (masked, the text as a hash)
INBOUND_LOG_KEY = "sms:inbound"
INBOUND_LOG_MAXLEN = 100_000


def record(client: Any, message: InboundMessage) -> None:
    """Append the message, as `describe()` gives it, to the inbound log (one XADD)."""
    fields = {k: "" if v is None else str(v) for k, v in message.describe().items()}
    client.xadd(INBOUND_LOG_KEY, fields, maxlen=INBOUND_LOG_MAXLEN, approximate=True)
