"""`config connection test`: do a connection's credentials work? One read-only request, no SMS sent.

| provider | request                                                         |
|----------|-----------------------------------------------------------------|
| twilio   | fetch the account, `GET /2010-04-01/Accounts/{sid}.json` (SDK)  |
| plivo    | fetch the account, `GET /v1/Account/{auth_id}/`                 |
| telnyx   | `GET /v2/messaging_profiles/{id}` with a profile id, else `GET /v2/balance` |
| sandbox  | nothing to check                                                |
| custom   | not checked: a custom endpoint has no request that sends nothing |

Outcomes use the send taxonomy (`auth_failed`, `provider_unavailable`, …). Every detail shown is
scrubbed of the connection's secrets, whatever the provider echoed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx
import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from producers.contract import ErrorCode
from worker.config.models import Connection
from worker.errors import SendError
from worker.providers import plivo, telnyx
from worker.providers import twilio as twilio_provider
from worker.providers.base import map_transport_errors, response_json, status_error


@dataclass(frozen=True, slots=True)
class ProbeResult:
    #: `ok`, `not_checked`, or an error code of the taxonomy
    outcome: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.outcome in ("ok", "not_checked")


def probe(connection: Connection, *, timeout: float, http: httpx.Client | None = None) -> ProbeResult:
    """Check `connection` against its provider; `http` (tests) replaces the httpx client."""
    try:
        if connection.provider == "twilio":
            detail = _twilio(connection, timeout)
        elif connection.provider in ("plivo", "telnyx"):
            check = _plivo if connection.provider == "plivo" else _telnyx
            if http is not None:
                detail = check(connection, http)
            else:
                with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
                    detail = check(connection, client)
        elif connection.provider == "sandbox":
            detail = "the sandbox needs no credentials"
        else:
            return ProbeResult("not_checked", "a custom endpoint has no request that sends nothing")
    except SendError as err:
        return ProbeResult(err.code.value, _scrub(err.message, connection))
    return ProbeResult("ok", _scrub(detail, connection))


def _twilio(connection: Connection, timeout: float) -> str:
    # The SDK logs every request at INFO (URL and headers); keep it quiet here too.
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
    http = TwilioHttpClient(timeout=timeout)
    sid = connection.secret("account_sid")
    client = Client(
        sid, connection.secret("auth_token"), http_client=http, environment={"TWILIO_IGNORE_ENVIRONMENT": "1"}
    )
    if connection.api_base_url:
        client.api.base_url = connection.api_base_url.rstrip("/")
    try:
        account = client.api.v2010.accounts(sid).fetch()
    except TwilioRestException as exc:
        raise _twilio_error(exc) from None
    except requests.exceptions.RequestException as exc:
        raise twilio_provider.translate_requests_error(exc) from None
    except TwilioException as exc:
        raise SendError(ErrorCode.PROVIDER_ERROR, f"twilio: {type(exc).__name__}") from None
    finally:
        http.session.close()
    if account.status != "active":
        raise SendError(ErrorCode.AUTH_FAILED, f"the twilio account is {account.status}")
    return "account active"


def _twilio_error(exc: TwilioRestException) -> SendError:
    status = int(exc.status or 0)
    code = exc.code if isinstance(exc.code, int) else None
    # Twilio's own message quotes the request URL (with the account SID): say it in our words.
    detail = {20003: "authentication failed", 20404: "no such account for these credentials"}.get(
        code or 0, ""
    )
    return status_error(
        "twilio",
        status,
        code=twilio_provider.ERROR_TABLE.get(code) if code is not None else None,
        provider_code=code if code is not None else status,
        detail=detail,
    )


def _plivo(connection: Connection, http: httpx.Client) -> str:
    auth_id = connection.secret("auth_id")
    base = (connection.api_base_url or plivo.DEFAULT_BASE_URL).rstrip("/")
    with map_transport_errors():
        response = http.get(
            f"{base}/v1/Account/{auth_id}/", auth=httpx.BasicAuth(auth_id, connection.secret("auth_token"))
        )
    if response.status_code == 200:
        return "account found"
    raise status_error("plivo", response.status_code, code=plivo.HTTP_TABLE.get(response.status_code))


def _telnyx(connection: Connection, http: httpx.Client) -> str:
    base = (connection.api_base_url or telnyx.DEFAULT_BASE_URL).rstrip("/")
    profile = connection.credentials.get("messaging_profile_id")
    path = f"/v2/messaging_profiles/{profile.get_secret_value()}" if profile else "/v2/balance"
    with map_transport_errors():
        response = http.get(base + path, headers={"Authorization": f"Bearer {connection.secret('api_key')}"})
    if response.status_code == 200:
        return "messaging profile found" if profile else "api key accepted"
    data = response_json(response)
    errors = data.get("errors") if isinstance(data, dict) else None
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    code = str(first["code"]) if first.get("code") is not None else None
    if response.status_code == 404 and profile:
        raise SendError(ErrorCode.SENDER_INVALID, "telnyx answered 404: no such messaging_profile_id")
    raise status_error(
        "telnyx",
        response.status_code,
        code=telnyx.ERROR_TABLE.get(code) if code else None,
        provider_code=code,
    )


def _scrub(text: str, connection: Connection) -> str:
    """`text` with every secret of the connection masked, should a provider have echoed one."""
    secrets = [
        v.get_secret_value()
        for v in (*connection.credentials.values(), *connection.custom_api_headers.values())
    ]
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "****")
    return text
