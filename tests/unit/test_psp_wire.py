"""The PSP calls' wire (connectors.wire): kept-alive connections, a PSP that closed one,
timeouts and broken answers as httpx names them, and answers framed every way HTTP/1.1
allows. A raw socket server plays the PSP, so each shape is exactly the one written."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from connectors import transport
from connectors.wire import PspClient
from tests.support.servers import RawServer

Reply = Callable[[bytes], bytes | None]  # the request's bytes → the answer (None: say nothing)


class FakePsp:
    """Answers each request on a connection with ``reply``; a ``RawServer`` counts the
    connections and drops them (``close_idle``) as a PSP's idle timeout does."""

    def __init__(self, reply: Reply, close_after_answer: bool = False):
        self.reply = reply
        self.close_after_answer = close_after_answer
        self.requests: list[bytes] = []
        self._server = RawServer(self._serve)
        self.url = f"http://127.0.0.1:{self._server.port}"

    @property
    def connections(self) -> int:
        return self._server.accepted

    def close_idle(self) -> None:
        self._server.close_connections()

    def stop(self) -> None:
        self._server.close()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                head, sep, rest = buffer.partition(b"\r\n\r\n")
                if not sep:
                    continue
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if len(rest) < length:
                    continue
                request, buffer = head + sep + rest[:length], rest[length:]
                self.requests.append(request)
                answer = self.reply(request)
                if answer is None:
                    continue  # silent: the client's read timeout is what ends it
                conn.sendall(answer)
                if self.close_after_answer:
                    conn.close()
                    return
        except OSError:
            return


@contextmanager
def fake_psp(reply: Reply, **kw: bool) -> Iterator[FakePsp]:
    psp = FakePsp(reply, **kw)
    try:
        yield psp
    finally:
        psp.stop()


def _json(body: bytes = b'{"ok": true}') -> Reply:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    return lambda _request: head + str(len(body)).encode() + b"\r\n\r\n" + body


@pytest.fixture
def client() -> Iterator[PspClient]:
    made = transport.new_client(httpx.Timeout(2.0, connect=1.0))
    yield made
    made.close()


def test_calls_share_one_kept_alive_connection(client):
    with fake_psp(_json()) as psp:
        for _ in range(3):
            call = transport.send(client, "POST", f"{psp.url}/pay", json_body={"a": 1}, psp="t")
            assert call.ok and call.body == {"ok": True}
    assert psp.connections == 1


def test_a_connection_the_psp_closed_while_idle_is_not_used_again(client):
    with fake_psp(_json()) as psp:
        assert transport.send(client, "GET", f"{psp.url}/a", psp="t").ok
        psp.close_idle()
        time.sleep(0.05)  # the FIN has arrived
        second = transport.send(client, "GET", f"{psp.url}/b", psp="t")
    assert second.ok and second.exchange.error is None
    assert psp.connections == 2


def test_an_answer_that_closes_its_connection_is_read_whole_and_not_kept(client):
    body = b'{"id": "p1"}'
    reply = _json(body)
    with fake_psp(
        lambda r: reply(r).replace(b"Content-Length", b"Connection: close\r\nX"),
        close_after_answer=True,
    ) as psp:
        first = transport.send(client, "GET", f"{psp.url}/a", psp="t")
        second = transport.send(client, "GET", f"{psp.url}/b", psp="t")
    # No Content-Length any more: the body runs to the close, and is still read whole.
    assert first.body == second.body == {"id": "p1"}
    assert psp.connections == 2


def test_a_chunked_answer_is_read_whole(client):
    chunked = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5\r\n{"a":\r\n3\r\n 1}\r\n0\r\n\r\n'
    )
    with fake_psp(lambda _r: chunked) as psp:
        call = transport.send(client, "GET", f"{psp.url}/a", psp="t")
    assert call.body == {"a": 1} and call.exchange.response_body == {"a": 1}


def test_a_silent_psp_is_a_read_timeout_and_an_unknown_outcome():
    short = transport.new_client(httpx.Timeout(0.3, connect=1.0))
    with fake_psp(lambda _r: None) as psp:
        started = time.monotonic()
        call = transport.send(short, "POST", f"{psp.url}/pay", json_body={"a": 1}, psp="t")
    short.close()
    assert time.monotonic() - started < 1.5
    assert call.unknown and call.status is None
    assert call.exchange.error.startswith("ReadTimeout")


def test_a_refused_connection_is_a_connect_error(client):
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
    call = transport.send(client, "GET", f"http://127.0.0.1:{port}/a", psp="t")
    assert call.unknown and call.exchange.error.startswith("ConnectError")


def test_a_connection_dropped_unanswered_is_a_protocol_error(client):
    with fake_psp(lambda _r: b"", close_after_answer=True) as psp:
        call = transport.send(client, "POST", f"{psp.url}/pay", json_body={"a": 1}, psp="t")
    assert call.unknown and call.exchange.error.startswith("RemoteProtocolError")
    assert len(psp.requests) == 1  # sent once, never again on its own


def test_what_goes_out(client):
    with fake_psp(_json()) as psp:
        transport.send(
            client,
            "POST",
            f"{psp.url}/pay?x=1",
            form={"amount": "1.50", "note": "a b&c"},
            params={"ref": "r 1"},
            headers={"Authorization": "Bearer k"},
            psp="t",
        )
    head, _, body = psp.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /pay?x=1&ref=r+1 HTTP/1.1"
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    assert headers[b"host"] == psp.url.removeprefix("http://").encode()
    assert headers[b"content-type"] == b"application/x-www-form-urlencoded"
    assert headers[b"authorization"] == b"Bearer k"
    assert b"accept-encoding" not in headers  # answers come back as they are, never packed
    assert body == b"amount=1.50&note=a+b%26c"


def test_text_answers_are_decoded_with_their_charset(client):
    answer = b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=latin-1\r\n"
    answer += b"Content-Length: 5\r\n\r\ncaf\xe9!"
    with fake_psp(lambda _r: answer) as psp:
        call = transport.send(client, "GET", f"{psp.url}/a", psp="t")
    assert call.status == 502 and call.unknown and call.body == "café!"
