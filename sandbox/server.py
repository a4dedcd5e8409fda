"""``connxt sandbox``: serve the simulated PSPs with uvicorn."""

from __future__ import annotations

import uvicorn

from sandbox.app import create_app

DEFAULT_HOST = "127.0.0.1"  # loopback: the sandbox is for this machine only
DEFAULT_PORT = 8100  # as deploy/run.sh, the Procfile and the compose file use it


def run(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, log_level: str = "info") -> None:
    """Serve until interrupted. Connectors reach it when CONNXT_SANDBOX_URL points here."""
    # No access log: the sandbox logs what each request did, and a line per request would
    # make the simulated PSP cost more CPU than the service it stands in for.
    uvicorn.run(create_app(), host=host, port=port, log_level=log_level, access_log=False)
