"""Providers against their fake servers: requests as each API expects, answers in the one taxonomy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from producers.contract import ErrorCode, Status, tool_message
from worker.config.models import Connection
from worker.errors import SendError
from worker.providers import ProviderPool, telnyx
from worker.providers.base import OutboundSms, translate_transport_error
from worker.providers.custom import check_endpoint
from worker.settings import Settings
from worker.testing.actions import Delay, Drop, Error, Hang, Reply
from worker.testing.custom import FakeCustomEndpoint
from worker.testing.plivo import FakePlivo
from worker.testing.telnyx import FakeTelnyx
from worker.testing.twilio import FakeTwilio

TO = "+14155551234"
FROM = "+15005550006"
PROFILE = "4000eba1-a0c0-4563-9925-b25e842a7cb6"


def test_every_httpx_transport_error_is_translated() -> None:
    """No httpx transport exception escapes the boundary untranslated (the httpx anchor's test)."""
    request = httpx.Request("POST", "https://example.invalid")

    def subclasses(cls: type[BaseException]) -> Iterator[type[BaseException]]:
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    for cls in subclasses(httpx.TransportError):
        exc = cls("boom", request=request)  # type: ignore[call-arg]
        mapped = translate_transport_error(exc)
        assert mapped is not None, cls
        assert mapped.code == ErrorCode.PROVIDER_UNAVAILABLE
        # only errors after which the provider cannot have the request are unambiguous
        assert mapped.ambiguous is not isinstance(
            exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
        )


# -- each provider against its fake ---------------------------------------------------------------


@pytest.fixture
def pool(redis_client: redis.Redis) -> Iterator[ProviderPool]:
    pool = ProviderPool(Settings(provider_timeout=1.0, allow_private_endpoints=True), redis_client)
    yield pool
    pool.close()


def sms(to: str = TO, body: str = "hello", key: str = "key-1") -> OutboundSms:
    return OutboundSms(
        to=to, from_=FROM, body=body, job_id="job-1", idempotency_key=key, validity_seconds=600
    )


def send_error(provider: Any, message: OutboundSms) -> SendError:
    with pytest.raises(SendError) as caught:
        provider.send(message)
    return caught.value


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake
        assert fake.violations == []


def twilio_connection(fake: FakeTwilio, token: str | None = None) -> Connection:
    return Connection(
        label="Twilio",
        provider="twilio",
        from_number=FROM,
        credentials={"account_sid": fake.account_sid, "auth_token": token or fake.auth_token},
        api_base_url=fake.url,
    )


class TestTwilio:
    def test_sends_the_form_fields_the_spec_defines(
        self, pool: ProviderPool, fake_twilio: FakeTwilio
    ) -> None:
        """A send is one spec-valid form POST with To, From, Body and ValidityPeriod; the SID comes back."""
        receipt = pool.get(twilio_connection(fake_twilio)).send(sms())
        [request] = fake_twilio.requests
        assert request.form() == {"To": TO, "From": FROM, "Body": "hello", "ValidityPeriod": "600"}
        assert receipt.message_id is not None and receipt.message_id.startswith("SM")

    def test_wrong_token_is_auth_failed(self, pool: ProviderPool, fake_twilio: FakeTwilio) -> None:
        """Bad credentials map to auth_failed, not retryable."""
        err = send_error(pool.get(twilio_connection(fake_twilio, token="wrong")), sms())
        assert (err.code, err.provider_code, err.retryable) == (ErrorCode.AUTH_FAILED, "20003", False)

    def test_429_carries_retry_after(self, pool: ProviderPool, fake_twilio: FakeTwilio) -> None:
        """20429 with Retry-After is rate_limited with the header's delay, though the SDK drops headers."""
        fake_twilio.script(Error(20429, status=429, headers={"Retry-After": "7"}))
        err = send_error(pool.get(twilio_connection(fake_twilio)), sms())
        assert (err.code, err.retry_after, err.ambiguous) == (ErrorCode.RATE_LIMITED, 7.0, False)

    def test_magic_number_and_number_masking(self, pool: ProviderPool, fake_twilio: FakeTwilio) -> None:
        """Twilio's 21610 is recipient_opted_out, and the number Twilio quotes is masked in the message."""
        err = send_error(pool.get(twilio_connection(fake_twilio)), sms(to="+15005550004"))
        assert err.code == ErrorCode.RECIPIENT_OPTED_OUT
        assert "15005550004" not in err.message

    def test_problem_details_errors_are_caught(self, pool: ProviderPool, fake_twilio: FakeTwilio) -> None:
        """An RFC 9457 body (TwilioServiceException, not a TwilioRestException) is mapped too."""
        problem = {"type": "https://twilio.com/e/21211", "title": "Invalid To", "status": 400, "code": 21211}
        fake_twilio.script(Reply(400, json=problem, headers={"Content-Type": "application/problem+json"}))
        assert send_error(pool.get(twilio_connection(fake_twilio)), sms()).code == ErrorCode.INVALID_NUMBER

    @pytest.mark.parametrize(
        ("action", "ambiguous"),
        [(Hang(), True), (Drop(), True), (Reply(502, body=b"<html>bad gateway</html>"), True),
         (Error(20503, status=503), False)],
        ids=["hang", "drop", "html-502", "503"],
    )  # fmt: skip
    def test_transport_failures_are_retryable(
        self, pool: ProviderPool, fake_twilio: FakeTwilio, action: Any, ambiguous: bool
    ) -> None:
        """Hangs, dropped connections and 5xx are provider_unavailable; those after which Twilio may
        hold the message are flagged ambiguous."""
        fake_twilio.script(action)
        err = send_error(pool.get(twilio_connection(fake_twilio)), sms())
        assert (err.code, err.retryable, err.ambiguous) == (ErrorCode.PROVIDER_UNAVAILABLE, True, ambiguous)

    def test_the_client_is_reused(self, pool: ProviderPool, fake_twilio: FakeTwilio) -> None:
        """One provider per connection and process: keep-alive, not a client per message."""
        assert pool.get(twilio_connection(fake_twilio)) is pool.get(twilio_connection(fake_twilio))


class TestTelnyx:
    @pytest.fixture
    def fake(self) -> Iterator[FakeTelnyx]:
        with FakeTelnyx() as fake:
            yield fake
            assert fake.violations == []

    def connection(self, fake: FakeTelnyx) -> Connection:
        return Connection(
            label="Telnyx",
            provider="telnyx",
            from_number=FROM,
            credentials={
                "api_key": fake.api_key,
                "messaging_profile_id": "4000eba1-a0c0-4563-9925-b25e842a7cb6",
            },
            api_base_url=fake.url,
        )

    def test_sends_json_with_bearer_and_idempotency_key(self, pool: ProviderPool, fake: FakeTelnyx) -> None:
        """A spec-valid JSON POST with the Bearer key and the job's Idempotency-Key; the id comes back."""
        receipt = pool.get(self.connection(fake)).send(sms(key="CA1:tool-1"))
        [request] = fake.requests
        assert request.json() == {"to": TO, "text": "hello", "from": FROM, "messaging_profile_id": PROFILE}
        assert request.headers["idempotency-key"] == telnyx.telnyx_idempotency_key("CA1:tool-1")
        assert request.bearer_token() == fake.api_key
        assert receipt.message_id

    def test_a_retried_request_is_dropped_by_telnyx(self, pool: ProviderPool, fake: FakeTelnyx) -> None:
        """Telnyx honours the idempotency key: sending the same key twice creates one message."""
        provider = pool.get(self.connection(fake))
        first = provider.send(sms(key="same"))
        second = provider.send(sms(key="same"))
        assert first.message_id == second.message_id
        assert len(fake.accepted) == 1

    @pytest.mark.parametrize(
        ("to", "code"),
        [("+15005550004", ErrorCode.RECIPIENT_OPTED_OUT), ("+15005550001", ErrorCode.INVALID_NUMBER)],
    )
    def test_errors_are_classified_by_code(
        self, pool: ProviderPool, fake: FakeTelnyx, to: str, code: ErrorCode
    ) -> None:
        """40300 and 40310 map by their error code after exactly one request."""
        err = send_error(pool.get(self.connection(fake)), sms(to=to))
        assert err.code == code and not err.retryable
        assert len(fake.requests) == 1

    def test_rate_limit_reset_header_is_the_retry_delay(self, pool: ProviderPool, fake: FakeTelnyx) -> None:
        """10011 with x-ratelimit-reset is rate_limited with that delay (Telnyx sends no Retry-After)."""
        fake.script(Error("10011", status=429, headers={"x-ratelimit-reset": "3"}))
        err = send_error(pool.get(self.connection(fake)), sms())
        assert (err.code, err.retry_after) == (ErrorCode.RATE_LIMITED, 3.0)

    def test_same_code_with_another_status_is_still_opted_out(
        self, pool: ProviderPool, fake: FakeTelnyx
    ) -> None:
        """40300 is opted-out whatever HTTP status carries it (third parties saw 400, 403, 409, 422)."""
        fake.script(Error("40300", status=422))
        assert send_error(pool.get(self.connection(fake)), sms()).code == ErrorCode.RECIPIENT_OPTED_OUT


class TestPlivo:
    @pytest.fixture
    def fake(self) -> Iterator[FakePlivo]:
        with FakePlivo() as fake:
            yield fake
            assert fake.violations == []

    def connection(self, fake: FakePlivo, token: str | None = None) -> Connection:
        return Connection(
            label="Plivo",
            provider="plivo",
            from_number=FROM,
            credentials={"auth_id": fake.auth_id, "auth_token": token or fake.auth_token},
            api_base_url=fake.url,
        )

    def test_sends_src_dst_text_and_reads_the_uuid(self, pool: ProviderPool, fake: FakePlivo) -> None:
        """A JSON POST to /v1/Account/{auth_id}/Message/ with src/dst/text; the first uuid comes back."""
        receipt = pool.get(self.connection(fake)).send(sms())
        [request] = fake.requests
        assert request.path == f"/v1/Account/{fake.auth_id}/Message/"
        assert {k: request.json()[k] for k in ("src", "dst", "text")} == {
            "src": FROM,
            "dst": TO,
            "text": "hello",
        }
        assert receipt.message_id

    def test_bad_credentials_and_bad_destination(self, pool: ProviderPool, fake: FakePlivo) -> None:
        """401 is auth_failed; a 400 about the destination is invalid_number."""
        assert send_error(pool.get(self.connection(fake, token="nope")), sms()).code == ErrorCode.AUTH_FAILED
        assert (
            send_error(pool.get(self.connection(fake)), sms(to="+15005550001")).code
            == ErrorCode.INVALID_NUMBER
        )

    def test_server_errors_and_throttling_are_retryable(self, pool: ProviderPool, fake: FakePlivo) -> None:
        """500 is provider_unavailable and 429 rate_limited: both retryable."""
        fake.script(Error(status=500), Error(status=429))
        provider = pool.get(self.connection(fake))
        assert send_error(provider, sms()).code == ErrorCode.PROVIDER_UNAVAILABLE
        assert send_error(provider, sms()).code == ErrorCode.RATE_LIMITED


class TestCustom:
    def connection(self, url: str) -> Connection:
        return Connection(
            label="Gateway",
            provider="custom",
            custom_api_url=url,
            custom_api_headers={"X-Api-Key": "gw-secret"},
        )

    def test_posts_to_and_message_with_the_configured_headers(self, pool: ProviderPool) -> None:
        """The endpoint gets {"to", "message"} and its headers; any 2xx is acceptance."""
        with FakeCustomEndpoint({"X-Api-Key": "gw-secret"}) as fake:
            receipt = pool.get(self.connection(fake.url + "/sms")).send(sms())
            assert fake.violations == []
            assert fake.requests[0].json() == {"to": TO, "message": "hello"}
        assert receipt.message_id

    def test_redirects_are_not_followed(self, pool: ProviderPool) -> None:
        """A 3xx is a refusal: the message is not re-posted elsewhere."""
        with FakeCustomEndpoint() as fake:
            fake.script(Reply(302, headers={"Location": "http://127.0.0.1:1/elsewhere"}))
            err = send_error(pool.get(self.connection(fake.url)), sms())
            assert err.code == ErrorCode.PROVIDER_ERROR and len(fake.requests) == 1

    def test_slow_endpoint_times_out(self, pool: ProviderPool) -> None:
        """An endpoint slower than SMS_PROVIDER_TIMEOUT is provider_unavailable, flagged ambiguous."""
        with FakeCustomEndpoint() as fake:
            fake.script(Delay(3.0))
            err = send_error(pool.get(self.connection(fake.url)), sms())
            assert (err.code, err.ambiguous) == (ErrorCode.PROVIDER_UNAVAILABLE, True)

    @pytest.mark.parametrize(
        "url",
        ["http://sms.example.com/send", "https://127.0.0.1/send", "https://10.0.0.8/send",
         "https://169.254.169.254/latest", "https://[::1]/send", "ftp://example.com/x"],
    )  # fmt: skip
    def test_unsafe_endpoints_are_refused_by_default(self, url: str) -> None:
        """Plain HTTP, loopback, private and link-local endpoints are refused unless explicitly allowed."""
        with pytest.raises(SendError) as caught:
            check_endpoint(url, allow_private=False)
        assert caught.value.code == ErrorCode.SENDER_INVALID
        assert caught.value.cause == "custom_endpoint"

    def test_a_refused_endpoint_is_spoken_apart_from_a_sender_not_set_up(self) -> None:
        """A refused custom endpoint and a sender that is not set up share `sender_invalid` but not
        the sentence the agent says."""
        with pytest.raises(SendError) as caught:
            check_endpoint("https://10.0.0.8/send", allow_private=False)
        endpoint = caught.value.info()
        sender = SendError(ErrorCode.SENDER_INVALID, "twilio answered 400 (21606)").info()
        assert tool_message(Status.FAILED, endpoint.code, endpoint.message, endpoint.cause) == (
            "SMS couldn't be sent: the agent's SMS endpoint isn't allowed; it must be a public https address."
        )
        assert tool_message(Status.FAILED, sender.code, sender.message, sender.cause) == (
            "SMS couldn't be sent: the sending number isn't set up for texting."
        )

    def test_private_endpoints_can_be_allowed(self) -> None:
        """SMS_ALLOW_PRIVATE_ENDPOINTS lets tests and on-premise gateways use local HTTP endpoints."""
        check_endpoint("http://127.0.0.1:8080/send", allow_private=True)


def test_a_changed_connection_gets_a_new_provider_and_the_old_one_is_retired(
    pool: ProviderPool, fake_twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live config change (same label, new token) builds a new provider; the old one is closed
    once it has been retired long enough, so a long-lived worker does not collect sessions."""
    import worker.providers as providers_module

    old = pool.get(twilio_connection(fake_twilio))
    new = pool.get(twilio_connection(fake_twilio, token="rotated"))
    assert new is not old
    closed: list[bool] = []
    monkeypatch.setattr(old, "close", lambda: closed.append(True))
    monkeypatch.setattr(providers_module, "RETIRE_AFTER", 0.0)
    pool.get(twilio_connection(fake_twilio, token="rotated-again"))
    assert closed == [True]


def test_the_pool_fingerprints_each_connection_object_once(
    pool: ProviderPool, fake_twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sends through one config's connection look its provider up without hashing its settings
    again; an equal connection loaded anew (another object) is fingerprinted and finds the same
    provider."""
    import worker.providers as providers_module

    calls: list[str] = []
    real = providers_module.fingerprint

    def counting(connection: Any) -> str:
        calls.append(connection.label)
        return real(connection)

    monkeypatch.setattr(providers_module, "fingerprint", counting)
    connection = twilio_connection(fake_twilio)
    first = pool.get(connection)
    assert all(pool.get(connection) is first for _ in range(5))
    assert len(calls) == 1
    assert pool.get(twilio_connection(fake_twilio)) is first
    assert len(calls) == 2
