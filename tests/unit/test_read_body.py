"""Reading a request's body costs time in proportion to its size, however it is cut.

The webhook door takes bodies from anyone: a body sent in tiny pieces must not cost the
event loop more than its bytes (appending piece by piece to one bytes object copies all of
it each time: a 1 MiB body in 20-byte pieces took 2.5 s of the loop's CPU).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from starlette.requests import ClientDisconnect, Request

from api_gateway.hot_paths import read_body

PIECE = 20


def request_in_pieces(size: int, piece: int = PIECE) -> Request:
    """A request whose body arrives as the server would hand over a trickling client's."""
    body = bytes(i % 251 for i in range(size))
    pieces = [body[i : i + piece] for i in range(0, size, piece)]
    messages = iter(
        [{"type": "http.request", "body": p, "more_body": True} for p in pieces[:-1]]
        + [{"type": "http.request", "body": pieces[-1], "more_body": False}]
    )

    async def receive() -> dict:
        return next(messages)

    return Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)


def seconds_to_read(size: int) -> float:
    """The least of three reads: the loop's own cost, not the host's hiccups."""
    best = float("inf")
    for _ in range(3):
        request = request_in_pieces(size)
        started = time.process_time()
        body = asyncio.run(read_body(request))
        best = min(best, time.process_time() - started)
        assert len(body) == size
    return best


def test_the_time_to_read_grows_linearly_with_the_size():
    small, large = 256 * 1024, 1024 * 1024
    ratio = seconds_to_read(large) / seconds_to_read(small)
    # Four times the bytes: about four times the time when linear, sixteen when quadratic.
    assert ratio < 8, f"reading 4x the bytes took {ratio:.1f}x the time"


def test_the_body_is_read_whole_and_in_order():
    request = request_in_pieces(1000, piece=7)
    assert asyncio.run(read_body(request)) == bytes(i % 251 for i in range(1000))


def test_a_single_piece_is_the_body_itself():
    async def receive() -> dict:
        return {"type": "http.request", "body": b'{"a": 1}', "more_body": False}

    request = Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)
    assert asyncio.run(read_body(request)) == b'{"a": 1}'


def test_a_client_gone_mid_body_is_a_client_disconnect():
    messages = iter(
        [{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}]
    )

    async def receive() -> dict:
        return next(messages)

    request = Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)
    with pytest.raises(ClientDisconnect):
        asyncio.run(read_body(request))
