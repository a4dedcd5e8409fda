"""The PSP calls' wire (connectors.psp_client on connxt.http_wire): kept-alive connections, a PSP
that closed one, timeouts, a deadline and a cap per call, broken answers under Connxt's
names, answers framed every way HTTP/1.1 allows and read whole or as they come, proxies,
and no cookies. A raw socket server plays the PSP (and the proxy), so each shape is exactly
the one written."""

from __future__ import annotations

import socket
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest

from connectors import transport
from connectors.psp_client import MAX_ANSWER_BYTES, PspClient
from connxt.http_errors import AnswerTooLarge
from tests.support.servers import RawServer
from tests.support.tls import self_signed

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
        try:
            for request in _requests(conn):
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


def _requests(conn: socket.socket) -> Iterator[bytes]:
    """Each whole request on a connection (its head, and a body of its Content-Length) as
    it arrives: one read may hold part of a request (a client writes head and body apart),
    or more than one."""
    buffer = b""
    while chunk := conn.recv(65536):
        buffer += chunk
        while True:
            head, sep, rest = buffer.partition(b"\r\n\r\n")
            if not sep:
                break
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(rest) < length:
                break
            yield head + sep + rest[:length]
            buffer = rest[length:]


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
    # Answers come back as they are, never packed.
    assert headers.get(b"accept-encoding", b"identity") == b"identity"
    assert body == b"amount=1.50&note=a+b%26c"


def test_text_answers_are_decoded_with_their_charset(client):
    answer = b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=latin-1\r\n"
    answer += b"Content-Length: 5\r\n\r\ncaf\xe9!"
    with fake_psp(lambda _r: answer) as psp:
        call = transport.send(client, "GET", f"{psp.url}/a", psp="t")
    assert call.status == 502 and call.unknown and call.body == "café!"


def test_a_failure_on_a_kept_connection_is_never_sent_again(client):
    """The PSP hangs up on the second request of a kept connection, unanswered: the call is
    an unknown outcome, and the wire does not send it again on a new connection."""
    requests = []

    def serve(conn: socket.socket) -> None:
        arriving = _requests(conn)
        requests.append(next(arriving))
        conn.sendall(_json()(b""))
        requests.append(next(arriving))  # the whole second request, then hang up on it
        conn.shutdown(socket.SHUT_RDWR)
        conn.close()

    server = RawServer(serve)
    url = f"http://127.0.0.1:{server.port}/pay"
    try:
        assert transport.send(client, "POST", url, json_body={"a": 1}, psp="t").ok
        second = transport.send(client, "POST", url, json_body={"a": 2}, psp="t")
    finally:
        server.close()
    assert second.unknown and second.exchange.error.startswith("RemoteProtocolError")
    assert len(requests) == 2 and server.accepted == 1


def _trickled(body: bytes, pace: float) -> Callable[[socket.socket], None]:
    """A PSP that answers a byte at a time, ``pace`` seconds apart: each read returns
    within its timeout, but the answer as a whole takes ``len(body) * pace``."""

    def serve(conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            for byte in head + str(len(body)).encode() + b"\r\n\r\n" + body:
                conn.sendall(bytes([byte]))
                time.sleep(pace)
        except OSError:
            return

    return serve


def test_a_psp_that_trickles_its_answer_is_cut_off_at_the_calls_deadline():
    short = transport.new_client(httpx.Timeout(1.0, connect=1.0), deadline=1.5)
    server = RawServer(_trickled(b'{"id": "p1", "state": "PENDING"}', pace=0.05))
    try:
        started = time.monotonic()
        call = transport.send(
            short, "POST", f"http://127.0.0.1:{server.port}/pay", json_body={}, psp="t"
        )
        took = time.monotonic() - started
    finally:
        server.close()
        short.close()
    # No read waited a second, but the whole answer would have taken over 5 s.
    assert call.unknown and call.status is None
    assert call.exchange.error.startswith("DeadlineExceeded")
    assert 1.5 <= took < 2.5


class _Huge:
    """A PSP whose answer is far larger than any PSP's JSON (declared, or chunked with no
    length given), counting what it got out before the client hung up."""

    SIZE = 64 * 1024 * 1024

    def __init__(self, declared: bool):
        self.declared = declared
        self.sent = 0
        self.server = RawServer(self._serve)
        self.url = f"http://127.0.0.1:{self.server.port}"

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            piece = b"x" * 65536
            if self.declared:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.SIZE)
                frame = piece
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                frame = b"%x\r\n" % len(piece) + piece + b"\r\n"
            for _ in range(self.SIZE // len(piece)):
                conn.sendall(frame)
                self.sent += len(piece)
            if not self.declared:
                conn.sendall(b"0\r\n\r\n")
        except OSError:
            return


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_an_answer_past_the_cap_is_refused_and_not_read_to_its_end(client, declared):
    huge = _Huge(declared)
    try:
        call = transport.send(client, "GET", f"{huge.url}/report", psp="t")
    finally:
        huge.server.close()
    assert call.unknown and call.status is None
    assert call.exchange.error.startswith("AnswerTooLarge")
    # What left the PSP before the client hung up: at most the cap and the sockets'
    # buffers, far from the whole answer.
    assert huge.sent < 4 * MAX_ANSWER_BYTES < _Huge.SIZE


def _cookie_jar_psp() -> FakePsp:
    """A PSP that hands every answer a new session cookie."""
    count = iter(range(1_000_000))
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
    return FakePsp(lambda _r: head + b"Set-Cookie: session=s%d; Path=/\r\n\r\n{}" % next(count))


def _cookies_sent(psp: FakePsp) -> list[bytes]:
    return [r for r in psp.requests if b"\r\ncookie:" in r.lower()]


def test_no_cookie_is_kept_or_sent(client):
    psp = _cookie_jar_psp()
    try:
        for i in range(3):
            assert transport.send(client, "GET", f"{psp.url}/status/{i}", psp="t").ok
    finally:
        psp.stop()
    assert len(psp.requests) == 3 and _cookies_sent(psp) == []


@pytest.fixture
def proxy_env(monkeypatch):
    """The environment names a proxy (a FakePsp, which answers the calls itself)."""
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)

    def use(proxy: FakePsp, no_proxy: str = "") -> None:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("http_proxy", proxy.url)
        monkeypatch.setenv("NO_PROXY", no_proxy)
        monkeypatch.setenv("no_proxy", no_proxy)

    return use


def test_calls_go_through_the_environments_proxy_except_to_hosts_it_exempts(proxy_env):
    with fake_psp(_json()) as proxy, fake_psp(_json()) as direct:
        proxy_env(proxy, no_proxy="127.0.0.1")
        made = transport.new_client(httpx.Timeout(2.0, connect=1.0))
        try:
            assert transport.send(made, "POST", "http://psp.test/pay", json_body={}, psp="t").ok
            assert transport.send(made, "GET", f"{direct.url}/a", psp="t").ok
        finally:
            made.close()
    (through,) = proxy.requests
    assert through.startswith(b"POST http://psp.test/pay HTTP/1.1\r\n")
    assert b"\r\nHost: psp.test\r\n" in through
    (straight,) = direct.requests
    assert straight.startswith(b"GET /a HTTP/1.1\r\n")


def test_calls_through_a_proxy_share_no_cookies_between_threads(proxy_env):
    """Many calls at once through the proxy, each answered with a cookie: none carries one
    (with a jar shared by the threads, a cookie set on one call rode along on another)."""
    proxy = _cookie_jar_psp()
    proxy_env(proxy)
    made = transport.new_client(httpx.Timeout(5.0, connect=2.0))

    def calls(worker: int) -> None:
        for i in range(100):
            url = f"http://psp.test/status/{worker}-{i}"
            assert transport.send(made, "GET", url, psp="t").ok

    # Threads switch far more often than every 5 ms, so that what one call does lands
    # inside another's (a jar cleared before each call was still shared while it ran).
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        with ThreadPoolExecutor(8) as threads:
            list(threads.map(calls, range(8)))
    finally:
        sys.setswitchinterval(switch)
        made.close()
        proxy.stop()
    assert len(proxy.requests) == 800
    assert _cookies_sent(proxy) == []


def _report_server(lines: int) -> RawServer:
    """A PSP serving a settlement report of ``lines`` lines, chunked as it is written."""

    def serve(conn: socket.socket) -> None:
        try:
            while conn.recv(65536):  # a request each (small: one read on loopback)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                )
                for start in range(0, lines, 1000):
                    block = b"".join(
                        b"row-%d,12.50,USD\r\n" % n for n in range(start, min(start + 1000, lines))
                    )
                    conn.sendall(b"%x\r\n" % len(block) + block + b"\r\n")
                conn.sendall(b"0\r\n\r\n")
        except OSError:
            return

    return RawServer(serve)


def test_a_report_streams_line_by_line_under_its_own_cap(client):
    server = _report_server(50_000)
    url = f"http://127.0.0.1:{server.port}/report"
    try:
        with transport.stream(client, "GET", url, psp="t", max_bytes=10 * 1024 * 1024) as answer:
            assert answer.status == 200
            count, last = 0, b""
            for line in answer.lines():
                count, last = count + 1, line
        assert (count, last) == (50_000, b"row-49999,12.50,USD")

        with (
            pytest.raises(AnswerTooLarge),
            transport.stream(client, "GET", url, psp="t", max_bytes=100_000) as answer,
        ):
            for _line in answer.lines():
                pass
    finally:
        server.close()


def test_https_calls_go_through_the_proxys_tunnel_with_tls_for_the_psps_name(
    proxy_env, monkeypatch, tmp_path
):
    """The proxy is asked for a tunnel (CONNECT psp.test:443), and TLS inside it is
    verified for psp.test; the proxy sees nothing of the call but where it goes."""
    cert_file, key_file = self_signed(tmp_path, "psp.test")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_file, key_file)
    tunnels: list[bytes] = []

    def proxy(conn: socket.socket) -> None:
        try:
            tunnels.append(conn.recv(65536))
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with server_tls.wrap_socket(conn, server_side=True) as tls:
                tls.recv(65536)
                tls.sendall(_json(b'{"tunnelled": true}')(b""))
                tls.recv(65536)
        except OSError:
            return

    server = RawServer(proxy)
    monkeypatch.setenv("HTTPS_PROXY", f"http://user:pw@127.0.0.1:{server.port}")
    made = PspClient(
        httpx.Timeout(2.0, connect=1.0), 5.0, ssl.create_default_context(cafile=cert_file)
    )
    try:
        call = transport.send(made, "GET", "https://psp.test/status", psp="t")
    finally:
        made.close()
        server.close()
    assert call.ok and call.body == {"tunnelled": True}
    (asked,) = tunnels
    assert asked.startswith(b"CONNECT psp.test:443 HTTP/1.1\r\n")
    assert b"\r\nProxy-Authorization: Basic dXNlcjpwdw==\r\n" in asked
