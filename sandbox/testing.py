"""Helpers for tests that need the sandbox over real HTTP.

``serve(app)`` runs any ASGI app with uvicorn in a daemon thread on a free loopback port;
``WebhookCatcher`` is a stand-in for Connxt's webhook endpoint that records what the
simulated PSPs post, so a connector test can feed those bytes to ``parse_webhook``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(app: Any, start_timeout: float = 10.0) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 until the block ends; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server on port {port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(start_timeout)


class WebhookCatcher:
    """Records ``POST /hooks/{name}``; ``refuse`` makes a path answer 500 that many times."""

    def __init__(self) -> None:
        self.url = ""
        self.received: list[dict[str, Any]] = []
        self.refuse: dict[str, int] = {}
        self._lock = threading.Lock()
        self.app = FastAPI()
        self.app.post("/hooks/{name}")(self._hook)
        self.app.get("/return/{txn_id}")(self._back)

    async def _hook(self, name: str, request: Request) -> Response:
        path = f"/hooks/{name}"
        body = await request.body()
        with self._lock:
            status = 500 if self.refuse.get(path, 0) > 0 else 200
            if status == 500:
                self.refuse[path] -= 1
            self.received.append(
                {"path": path, "headers": dict(request.headers), "body": body, "status": status}
            )
        return Response(status_code=status)

    async def _back(self, txn_id: str) -> Response:
        return Response(f"back for {txn_id}")

    def attempts(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.received if r["path"] == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
        """The first ``count`` accepted posts to ``path``; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            accepted = [r for r in self.attempts(path) if r["status"] == 200]
            if len(accepted) >= count:
                return accepted[:count]
            time.sleep(0.05)
        raise AssertionError(f"no webhook at {path}; got {self.attempts(path)}")
