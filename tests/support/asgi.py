"""Requests sent to an in-process app at the ASGI level, as a server hands them over: the
body in pieces of any size, and a client that goes away before it has sent all of it.

The app runs in its TestClient's event loop (where its lifespan opened the pool), so the
request is driven through the client's portal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient


@dataclass
class Answer:
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # What escaped the app (a server would log it as an ASGI error).
    escaped: BaseException | None = None

    def json(self) -> Any:
        return json.loads(self.body)

    def envelope(self) -> dict[str, Any]:
        """The answer's JSON without its timestamp, the one part that may differ."""
        data = self.json()
        data.pop("timestamp", None)
        return data


def send_raw(
    client: TestClient,
    path: str,
    headers: dict[str, str],
    pieces: list[bytes],
    *,
    disconnect: bool = False,
    declared_length: bool = True,
    method: str = "POST",
) -> Answer:
    """POST ``pieces`` as the body, one ASGI message each; with ``disconnect`` the client
    goes away after the last piece instead of finishing the body."""
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if declared_length and not disconnect:
        raw_headers.append((b"content-length", str(sum(map(len, pieces))).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": piece, "more_body": True} for piece in pieces
    ]
    if disconnect:
        messages.append({"type": "http.disconnect"})
    else:
        messages.append({"type": "http.request", "body": b"", "more_body": False})
    answer = Answer()

    async def receive() -> dict[str, Any]:
        # A finished (or abandoned) request only has a disconnect left to tell.
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {k.decode(): v.decode() for k, v in message.get("headers", ())}
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")

    async def run() -> None:
        try:
            await client.app(scope, receive, send)
        except Exception as exc:  # what a server would log as an error of the app
            answer.escaped = exc

    client.portal.call(run)
    return answer
