"""The fakes' account endpoints: list-numbers in each provider's paging, answers held to the official
specs (Twilio, Telnyx) or to Plivo's documented fields, auth failures in each provider's shape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from worker.testing import FakePlivo, FakeServer, FakeTelnyx, FakeTwilio
from worker.testing.accounts import OwnedNumber

NUMBERS = (
    OwnedNumber("+14155550000", name="Support"),
    OwnedNumber("+14155550001", mms=False),
    OwnedNumber.voice_only("+14155550009", name="IVR"),
    OwnedNumber("+14155550002", name="Sales"),
    OwnedNumber("+14155550003"),
)


@pytest.fixture
def numbers_on(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every session fake of this folder serves `NUMBERS` during the test."""
    fakes: list[FakeServer] = [
        request.getfixturevalue(n) for n in ("fake_twilio", "fake_plivo", "fake_telnyx")
    ]
    saved = [fake.numbers for fake in fakes]  # type: ignore[attr-defined]
    for fake in fakes:
        fake.numbers = NUMBERS  # type: ignore[attr-defined]
    yield
    for fake, numbers in zip(fakes, saved, strict=True):
        fake.numbers = numbers  # type: ignore[attr-defined]


def spec_violations(fake: FakeTwilio | FakeTelnyx, answer: httpx.Response) -> list[str]:
    """What the provider's OpenAPI document finds wrong with the fake's answer to its last request."""
    assert fake.contract is not None
    request = fake.requests[-1]
    response = fake._answer(request, None)  # the same answer again, as the fake's own Response
    assert response.status == answer.status_code
    return fake.contract.response_violations(request, response)


# -- Twilio -----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("numbers_on")
def test_twilio_pages_with_page_size_and_page_token_and_every_page_matches_the_spec(
    fake_twilio: FakeTwilio,
) -> None:
    """PageSize=2 over five numbers: three pages linked by `next_page_uri` (PageToken `PA…`), back by
    `previous_page_uri`; each request and each answer is valid against Twilio's OpenAPI document."""
    auth = (fake_twilio.account_sid, fake_twilio.auth_token)
    seen: list[dict[str, Any]] = []
    with httpx.Client(base_url=fake_twilio.url, auth=auth) as raw:
        uri: str | None = f"{fake_twilio.numbers_path}?PageSize=2"
        while uri is not None:
            answer = raw.get(uri)
            assert answer.status_code == 200
            assert spec_violations(fake_twilio, answer) == []
            seen.append(answer.json())
            uri = seen[-1]["next_page_uri"]
        back = raw.get(seen[-1]["previous_page_uri"]).json()

    numbers = [n["phone_number"] for page in seen for n in page["incoming_phone_numbers"]]
    assert numbers == [n.number for n in NUMBERS]
    assert [(p["page"], p["start"], p["end"], p["page_size"]) for p in seen] == [
        (0, 0, 1, 2),
        (1, 2, 3, 2),
        (2, 4, 4, 2),
    ]
    assert "PageToken=PA" in seen[0]["next_page_uri"] and seen[0]["previous_page_uri"] is None
    assert back["incoming_phone_numbers"] == seen[1]["incoming_phone_numbers"]
    ivr = seen[1]["incoming_phone_numbers"][0]
    assert ivr["capabilities"] == {"voice": True, "sms": False, "mms": False, "fax": False}
    assert ivr["friendly_name"] == "IVR" and ivr["sid"].startswith("PN")
    assert seen[0]["incoming_phone_numbers"][1]["friendly_name"] == "(415) 555-0001"  # Twilio's default
    assert fake_twilio.violations == []


def test_twilio_refuses_a_page_size_the_spec_refuses(fake_twilio: FakeTwilio) -> None:
    """A PageSize over 1000 breaks Twilio's spec: recorded, and answered 400 / 70002."""
    auth = (fake_twilio.account_sid, fake_twilio.auth_token)
    with httpx.Client(base_url=fake_twilio.url, auth=auth) as raw:
        too_big = raw.get(fake_twilio.numbers_path, params={"PageSize": 1001})
    assert too_big.status_code == 400 and too_big.json()["code"] == 70002
    assert len(fake_twilio.violations) == 1 and "PageSize" in fake_twilio.violations[0]


def test_twilio_account_fetch_reports_its_status(fake_twilio: FakeTwilio) -> None:
    """`GET /Accounts/{Sid}.json` answers the account (spec-valid); another SID is 20404."""
    auth = (fake_twilio.account_sid, fake_twilio.auth_token)
    with httpx.Client(base_url=fake_twilio.url, auth=auth) as raw:
        account = raw.get(f"/2010-04-01/Accounts/{fake_twilio.account_sid}.json")
        assert spec_violations(fake_twilio, account) == []
        other = raw.get("/2010-04-01/Accounts/AC" + "f" * 32 + ".json")
    assert account.json()["status"] == "active"
    assert other.status_code == 404 and other.json()["code"] == 20404


# -- Plivo ------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("numbers_on")
def test_plivo_pages_with_limit_and_offset_and_meta(fake_plivo: FakePlivo) -> None:
    """limit=2: `meta` has limit, offset, next and previous (paths with the same limit) and the total;
    numbers come without `+`, with sms/mms/voice_enabled and the alias."""
    auth = (fake_plivo.auth_id, fake_plivo.auth_token)
    path = f"/v1/Account/{fake_plivo.auth_id}/Number/"
    with httpx.Client(base_url=fake_plivo.url, auth=auth) as raw:
        second = raw.get(path, params={"limit": 2, "offset": 2}).json()
        last = raw.get(path, params={"limit": 2, "offset": 4}).json()
    assert second["meta"] == {
        "limit": 2,
        "next": f"{path}?limit=2&offset=4",
        "offset": 2,
        "previous": f"{path}?limit=2&offset=0",
        "total_count": 5,
    }
    assert last["meta"]["next"] is None
    ivr = second["objects"][0]
    assert (ivr["number"], ivr["alias"]) == ("14155550009", "IVR")
    assert (ivr["sms_enabled"], ivr["mms_enabled"], ivr["voice_enabled"]) == (False, False, True)
    assert fake_plivo.violations == []


def test_plivo_refuses_a_limit_over_20_and_unknown_parameters(fake_plivo: FakePlivo) -> None:
    """Plivo documents `limit` up to 20: more is a violation and a 400; so is an undocumented name."""
    auth = (fake_plivo.auth_id, fake_plivo.auth_token)
    path = f"/v1/Account/{fake_plivo.auth_id}/Number/"
    with httpx.Client(base_url=fake_plivo.url, auth=auth) as raw:
        too_many = raw.get(path, params={"limit": 21})
        unknown = raw.get(path, params={"page": 2})
    assert too_many.status_code == 400 and set(too_many.json()) == {"api_id", "error"}
    assert unknown.status_code == 400
    assert [v.split(":")[0] for v in fake_plivo.violations] == ["limit", "page"]


# -- Telnyx -----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("numbers_on")
@pytest.mark.parametrize("path", ["/v2/phone_numbers", "/v2/phone_numbers/messaging"])
def test_telnyx_pages_both_lists_and_matches_the_spec(fake_telnyx: FakeTelnyx, path: str) -> None:
    """page[size]=2: `meta` counts pages and results; both lists' answers are valid against Telnyx's
    OpenAPI document; the messaging list gives null SMS/MMS features where the number has none."""
    headers = {"Authorization": f"Bearer {fake_telnyx.api_key}"}
    pages = []
    with httpx.Client(base_url=fake_telnyx.url, headers=headers) as raw:
        for number in (1, 2, 3):
            answer = raw.get(path, params={"page[number]": number, "page[size]": 2})
            assert answer.status_code == 200
            assert spec_violations(fake_telnyx, answer) == []
            pages.append(answer.json())
    assert pages[0]["meta"] == {"page_number": 1, "page_size": 2, "total_pages": 3, "total_results": 5}
    items = [item for page in pages for item in page["data"]]
    assert [i["phone_number"] for i in items] == [n.number for n in NUMBERS]
    ivr = items[2]
    if path.endswith("messaging"):
        assert ivr["features"] == {"sms": None, "mms": None}
        assert items[1]["features"]["mms"] is None and items[1]["features"]["sms"] is not None
    else:
        assert ivr["messaging_profile_id"] is None and ivr["connection_id"] is not None
        assert items[0]["customer_reference"] == "Support"
    assert fake_telnyx.violations == []


def test_telnyx_refuses_a_page_size_over_250(fake_telnyx: FakeTelnyx) -> None:
    """The spec caps page[size] at 250: a violation, answered 400 10015."""
    headers = {"Authorization": f"Bearer {fake_telnyx.api_key}"}
    answer = httpx.get(f"{fake_telnyx.url}/v2/phone_numbers", params={"page[size]": 251}, headers=headers)
    assert answer.status_code == 400 and answer.json()["errors"][0]["code"] == "10015"
    assert len(fake_telnyx.violations) == 1


def test_telnyx_balance_and_messaging_profile_fetches(fake_telnyx: FakeTelnyx) -> None:
    """What `connection test` fetches: the balance, the profile (spec-valid), 404 10005 for another."""
    headers = {"Authorization": f"Bearer {fake_telnyx.api_key}"}
    with httpx.Client(base_url=fake_telnyx.url, headers=headers) as raw:
        balance = raw.get("/v2/balance")
        assert spec_violations(fake_telnyx, balance) == []
        profile = raw.get("/v2/messaging_profiles/4000eba1-a0c0-4563-9925-b25e842a7cb6")
        assert spec_violations(fake_telnyx, profile) == []
        other = raw.get("/v2/messaging_profiles/00000000-0000-4000-8000-000000000000")
    assert balance.json()["data"]["record_type"] == "balance"
    assert profile.json()["data"]["name"] == "Fake messaging profile"
    assert other.status_code == 404 and other.json()["errors"][0]["code"] == "10005"


# -- every provider -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "path", "shape"),
    [
        (
            "fake_twilio",
            "/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json",
            {"code", "message", "more_info", "status"},
        ),
        ("fake_plivo", "/v1/Account/{sid}/Number/", {"api_id", "error"}),
        ("fake_telnyx", "/v2/phone_numbers/messaging", {"errors"}),
    ],
)
def test_a_wrong_secret_is_401_in_the_providers_own_shape(
    request: pytest.FixtureRequest, fixture: str, path: str, shape: set[str]
) -> None:
    """A list request with a wrong token or key is 401 with the provider's own error body."""
    fake: FakeServer = request.getfixturevalue(fixture)
    sid = str(getattr(fake, "account_sid", None) or getattr(fake, "auth_id", ""))
    if isinstance(fake, FakeTelnyx):
        answer = httpx.get(fake.url + path, headers={"Authorization": "Bearer wrong-key"})
    else:
        answer = httpx.get(fake.url + path.format(sid=sid), auth=(sid, "wrong-token"))
    assert answer.status_code == 401
    assert set(answer.json()) == shape
    assert "wrong" not in answer.text
