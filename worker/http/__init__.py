"""The HTTP service (`midcall-sms serve`): provider callbacks, the audit API, probes and metrics.

A Starlette application (`create_app`) served by uvicorn (`worker.http.serve`). Stateless: all
state is in Redis, so any number of replicas run behind a load balancer.

| module | what |
|---|---|
| `app.py` | the app factory: routes, and the per-process state built at startup |
| `state.py` | that state: settings, the Redis client, the config source (cached, refreshed) |
| `body.py` | reading a request body with a size limit |
| `webhooks.py` | `POST /v1/webhooks/{provider}/{connection_id}/status` and `/inbound` |
| `audit.py` | `GET /v1/calls/{call_id}/messages`, behind a bearer token |
| `probes.py` | `/healthz`, `/readyz`, `/metrics` |
| `metrics.py` | the service's Prometheus metrics |
| `serve.py` | `midcall-sms serve`: uvicorn with the service's settings |
"""

from worker.http.app import create_app

__all__ = ["create_app"]
