"""Checking requests, and the fakes' own answers, against a provider's official OpenAPI document.

The fakes run every request through openapi-core, so a worker that drifts from the real API (a
missing `To`, a malformed AccountSid, a wrong content type) fails the test even if the fake's
hand-written rules would have let it through. openapi-core is a dev dependency and the Telnyx YAML
takes ~3 s to parse, so both load lazily and once per process; every fake shares the parsed spec.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from worker.testing.exchange import RecordedRequest, Response

if TYPE_CHECKING:
    from openapi_core import OpenAPI
    from openapi_core.datatypes import RequestParameters

SPECS_DIR_ENV = "MIDCALL_SMS_SPECS_DIR"
"""Environment variable naming the folder with `twilio/…json` and `telnyx/…yml` (default: the repo's
`tests/specs`, which an installed wheel does not ship)."""


def specs_dir() -> Path:
    """Where the spec files are: `$MIDCALL_SMS_SPECS_DIR`, else `tests/specs` of this checkout."""
    configured = os.environ.get(SPECS_DIR_ENV)
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "tests" / "specs"


class OpenApiContract:
    """One spec file, parsed on first use, and the public host its `servers` name.

    The fake's own address (http://127.0.0.1:port) appears in no spec, so requests are checked as if
    they had been sent to `host_url` with the same path: for Telnyx `/v2/messages` then matches the
    server `https://api.telnyx.com/v2` plus the path `/messages`.
    """

    def __init__(self, path: Path, host_url: str) -> None:
        self.path = path
        self.host_url = host_url
        self._openapi: OpenAPI | None = None
        # openapi-core makes no thread-safety promise, and several fakes (each on its own thread)
        # share one contract, so checks are serialised per spec.
        self._lock = threading.Lock()

    def load(self) -> OpenAPI:
        """Parse the spec now (the first check would otherwise pay for it); idempotent."""
        with self._lock:
            if self._openapi is None:
                self._openapi = _parse(self.path)
            return self._openapi

    def request_violations(self, request: RecordedRequest) -> list[str]:
        """What openapi-core finds wrong with `request` (path, parameters, security, body)."""
        openapi = self.load()
        with self._lock:
            result = openapi.unmarshal_request(self._adapt(request))
        return [_describe(error) for error in result.errors]

    def response_violations(self, request: RecordedRequest, response: Response) -> list[str]:
        """What openapi-core finds wrong with a fake's `response` to `request` (status, body schema)."""
        openapi = self.load()
        adapted = _OpenApiResponse(
            status_code=response.status,
            content_type=next(
                (v for k, v in response.headers.items() if k.lower() == "content-type"), ""
            ).lower(),
            headers=dict(response.headers),
            data=response.body,
        )
        with self._lock:
            result = openapi.unmarshal_response(self._adapt(request), adapted)
        return [_describe(error) for error in result.errors]

    def webhook_violations(self, name: str, headers: Mapping[str, str], body: bytes) -> list[str]:
        """What openapi-core finds wrong with a webhook POST the fake sends (the spec's `webhooks.<name>`,
        OpenAPI 3.1): its header parameters and its body. Security is not checked: openapi-core would
        apply the document's global `security` (the API's bearer token), which a provider's webhook
        does not carry, and stop there; the signature headers are checked as parameters instead."""
        from openapi_core.datatypes import RequestParameters
        from openapi_core.validation.request.validators import (
            V31WebhookRequestBodyValidator,
            V31WebhookRequestParametersValidator,
        )
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        openapi = self.load()
        webhook = _OpenApiWebhook(
            name=name,
            method="post",
            body=body,
            content_type=next((v for k, v in headers.items() if k.lower() == "content-type"), "").lower(),
            parameters=RequestParameters(query=ImmutableMultiDict(), header=Headers(list(headers.items()))),
        )
        with self._lock:
            errors = [
                *V31WebhookRequestParametersValidator(openapi.spec).iter_errors(webhook),
                *V31WebhookRequestBodyValidator(openapi.spec).iter_errors(webhook),
            ]
        return [_describe(error) for error in errors]

    def _adapt(self, request: RecordedRequest) -> _OpenApiRequest:
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        return _OpenApiRequest(
            host_url=self.host_url,
            path=request.path,
            method=request.method.lower(),
            body=request.body,
            content_type=request.headers.get("content-type", "").lower(),
            parameters=RequestParameters(
                query=ImmutableMultiDict([(k, v) for k, values in request.query.items() for v in values]),
                header=Headers(list(request.headers.multi_items())),
            ),
        )


_contracts: dict[tuple[Path, str], OpenApiContract] = {}
_contracts_lock = threading.Lock()


def contract(relative_path: str, host_url: str) -> OpenApiContract:
    """The process-wide contract for `specs_dir() / relative_path`; fails early if the file is missing."""
    path = specs_dir() / relative_path
    if not path.is_file():
        raise FileNotFoundError(
            f"OpenAPI spec {path} not found: set {SPECS_DIR_ENV} to the folder holding it, "
            "or turn request validation off (validate=False / --no-validate)"
        )
    with _contracts_lock:
        return _contracts.setdefault((path, host_url), OpenApiContract(path, host_url))


@dataclass
class _OpenApiRequest:
    """openapi-core's `Request` protocol, built from a recorded request."""

    host_url: str
    path: str
    method: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters


@dataclass
class _OpenApiWebhook:
    """openapi-core's `WebhookRequest` protocol, for a webhook a fake sends."""

    name: str
    method: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters


@dataclass(frozen=True)
class _OpenApiResponse:
    """openapi-core's `Response` protocol, built from a fake's answer."""

    status_code: int
    content_type: str
    data: bytes | None
    headers: dict[str, str] = field(default_factory=dict)


def _parse(path: Path) -> OpenAPI:
    from openapi_core import Config, OpenAPI

    with path.open("rb") as stream:
        if path.suffix == ".json":
            # Not through YAML: PyYAML rejects the surrogate escapes (\ud83d…) in Twilio's JSON.
            document: Any = json.load(stream)
        else:
            document = yaml.load(stream, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    # The Telnyx spec fails strict spec validation (a `default: null` on an integer); checking the
    # spec itself is not our job, so skip it for both (it also saves ~1 s on Twilio's).
    return OpenAPI.from_dict(document, config=Config(spec_validator_cls=None))


def _describe(error: BaseException) -> str:
    """One line per openapi-core error, with the schema messages that explain it."""
    what = type(error).__name__
    if (name := getattr(error, "name", None)) is not None:  # InvalidParameter, MissingRequiredParameter…
        what += f" ({getattr(error, 'location', '?')} parameter {name!r})"
    cause = error.__cause__
    schema_errors = getattr(cause, "schema_errors", None) or getattr(error, "schema_errors", None)
    if schema_errors:
        details = "; ".join(
            f"{'/'.join(str(part) for part in item.absolute_path) or '<root>'}: {item.message}"
            for item in schema_errors
        )
        return f"{what}: {details}"
    message = str(error)
    if cause is not None and str(cause) not in message:
        message += f" ({cause})"
    return f"{what}: {message}"
