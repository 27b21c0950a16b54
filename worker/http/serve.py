"""`midcall-sms serve`: the service on uvicorn, one process per container (scale by replicas).

SIGTERM (or Ctrl-C) stops accepting connections and lets requests in flight finish, for at most
`GRACEFUL_SHUTDOWN` seconds, before the process exits; the Kubernetes manifest gives it longer
than that.
"""

from __future__ import annotations

import uvicorn

from worker.http.app import create_app
from worker.settings import Settings

#: seconds requests in flight get to finish after SIGTERM
GRACEFUL_SHUTDOWN = 20


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> int:
    config = uvicorn.Config(
        create_app(settings),
        host=host or settings.http_host,
        port=settings.http_port if port is None else port,
        lifespan="on",
        log_config=None,  # uvicorn's loggers go through the service's structured logging
        access_log=False,  # a line per request would repeat webhook.handled (and show paths)
        server_header=False,
        proxy_headers=False,  # signatures are checked against SMS_PUBLIC_URL, not forwarded headers
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 2
