"""Merchant notification URLs cannot reach inside: the address checked is the address
connected to, redirects are not followed, answers are read only up to a cap.

The merchant's name and the public internet are played locally: ``socket.getaddrinfo``
answers for ``merchant.test`` as a rebinding DNS server would, and connections to the
public address it gives are routed to a local stand-in server.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from connxt.http_errors import ConnectError, DeadlineExceeded
from tests.support.servers import RawServer
from tests.support.tls import self_signed
from workers.merchant_http import MAX_RESPONSE_BYTES, MerchantClient
from workers.notify_urls import UnsafeUrl, check_merchant_url, check_url_form, is_public

PUBLIC = "93.184.215.14"  # any public address: connections to it never leave this machine
BODY_SIZE = 64 * 1024 * 1024


class Receiver(ThreadingHTTPServer):
    """A local HTTP server that records what reaches it and answers as told."""

    daemon_threads = True

    def __init__(self, answer: str = "ok"):
        self.hits: list[tuple[str, str | None]] = []
        self.answer = answer
        self.bytes_sent = 0
        self.redirect_to = ""
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, *_args) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.server.hits.append((self.path, self.headers.get("host")))
        if self.server.answer == "redirect":
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.server.answer == "huge":
            self.send_response(200)
            self.send_header("Content-Length", str(BODY_SIZE))
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(BODY_SIZE // len(chunk)):
                    self.wfile.write(chunk)
                    self.server.bytes_sent += len(chunk)
            except OSError:
                pass  # the client hung up: what it read was enough
            return
        self.send_response(204)
        self.end_headers()


@contextmanager
def receiver(answer: str = "ok") -> Iterator[Receiver]:
    server = Receiver(answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def network(monkeypatch):
    """Fake DNS for merchant.test (``answers``: one list of addresses per lookup, the last
    one repeated) and a route from the public address to a stand-in server."""
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.create_connection
    state = {"answers": [[PUBLIC]], "lookups": 0, "standin": None}

    def getaddrinfo(host, port, *args, **kwargs):
        if host != "merchant.test":
            return real_getaddrinfo(host, port, *args, **kwargs)
        answers = state["answers"]
        addresses = answers[min(state["lookups"], len(answers) - 1)]
        state["lookups"] += 1
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))
            for address in addresses
        ]

    def create_connection(address, *args, **kwargs):
        if address[0] == PUBLIC:
            address = ("127.0.0.1", state["standin"].port)
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return state


def client(allow_private: bool = False):
    return MerchantClient(timeout=5, allow_private=allow_private)


def test_a_name_that_rebinds_to_loopback_still_reaches_only_the_checked_address(network):
    with receiver() as inside, receiver() as standin:
        network["standin"] = standin
        # The check is told "public", anything asking again is told "loopback".
        network["answers"] = [[PUBLIC], ["127.0.0.1"]]
        url = f"http://merchant.test:{inside.port}/hook"
        with client() as http:
            assert http.post(url, b"{}", {"content-type": "application/json"}) == 204
        assert inside.hits == []
        assert standin.hits == [("/hook", f"merchant.test:{inside.port}")]
        assert network["lookups"] == 1  # resolved once, for check and connection alike


def test_names_and_addresses_inside_are_refused(network):
    with receiver() as inside:
        network["answers"] = [["127.0.0.1"]]
        with client() as http:
            for url in (
                f"http://merchant.test:{inside.port}/hook",
                f"http://127.0.0.1:{inside.port}/hook",
                f"http://localhost:{inside.port}/hook",
                f"http://[::ffff:127.0.0.1]:{inside.port}/hook",
                "http://169.254.169.254/latest/meta-data/",
            ):
                with pytest.raises(UnsafeUrl):
                    http.post(url, b"{}", {})
        assert inside.hits == []
        # A name with one inside address among public ones is refused as a whole.
        network["answers"] = [[PUBLIC, "10.0.0.7"]]
        with client() as http, pytest.raises(UnsafeUrl):
            http.post("http://merchant.test/hook", b"{}", {})


def test_private_targets_are_reached_only_when_allowed(network):
    with receiver() as inside:
        with client(allow_private=True) as http:
            assert http.post(f"http://127.0.0.1:{inside.port}/hook", b"{}", {}) == 204
        assert len(inside.hits) == 1


def test_redirects_are_never_followed(network):
    with receiver("redirect") as outside, receiver() as inside:
        network["standin"] = outside
        outside.redirect_to = f"http://127.0.0.1:{inside.port}/internal"
        with client(allow_private=True) as http:  # even where inside targets are allowed
            assert http.post(f"http://merchant.test:{outside.port}/hook", b"{}", {}) == 302
        assert inside.hits == []


def test_only_the_first_bytes_of_an_answer_are_read(network):
    with receiver("huge") as outside:
        network["standin"] = outside
        with client() as http:
            assert http.post(f"http://merchant.test:{outside.port}/hook", b"{}", {}) == 200
        # What the server got out before we hung up: our read plus the sockets' buffers,
        # far from the whole answer.
        assert outside.bytes_sent < BODY_SIZE // 2
        assert MAX_RESPONSE_BYTES <= 1024 * 1024


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("169.254.169.254", False),  # link-local: cloud metadata
        ("0.0.0.0", False),
        ("224.0.0.1", False),  # multicast
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("::ffff:10.0.0.1", False),
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b::5db8:d70e", True),  # NAT64 of a public address
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("2002:a00:1::", False),  # 6to4 of 10.0.0.1
        ("2002:a9fe:a9fe::1", False),  # 6to4 of 169.254.169.254 (cloud metadata)
        ("2002:c0a8:101::1", False),  # 6to4 of 192.168.1.1
        ("2002:5db8:d70e::1", True),  # 6to4 of a public address
        ("fec0::1", False),  # site-local (deprecated, still routed inside some networks)
        ("feff:ffff::1", False),  # the top of fec0::/10
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
    ],
)
def test_public_addresses(address, public):
    assert is_public(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    "url",
    ["ftp://merchant.test/x", "/relative", "http://user:pw@merchant.test/", "http://[::1"],
)
def test_malformed_urls_are_refused_before_any_lookup(url):
    with pytest.raises(UnsafeUrl):
        check_url_form(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://[2002:7f00:1::1]/hook",  # 6to4 of loopback
        "http://[2002:a9fe:a9fe::]/latest/meta-data/",  # 6to4 of the metadata address
        "http://[fec0::1]/hook",  # site-local
    ],
)
def test_a_merchant_url_naming_an_inside_address_in_ipv6_clothing_is_refused(monkeypatch, url):
    """When the merchant sets the URL (and again on every connection, through is_public)."""
    monkeypatch.setattr("workers.notify_urls.private_allowed", lambda *_: False)
    with pytest.raises(UnsafeUrl, match="private, loopback or reserved"):
        check_merchant_url(url)


def test_inside_targets_are_refused_by_default_and_never_allowed_in_production(monkeypatch):
    from connxt.settings import Settings
    from workers.notify_urls import private_allowed

    monkeypatch.delenv("CONNXT_ALLOW_PRIVATE_NOTIFICATION_URLS", raising=False)
    monkeypatch.delenv("CONNXT_ALLOW_PRIVATE_WEBHOOK_URLS", raising=False)
    assert Settings().allow_private_notification_urls is False
    assert private_allowed(Settings()) is False
    assert private_allowed(Settings(allow_private_notification_urls=True)) is True
    production = Settings(env="production", allow_private_notification_urls=True)
    assert private_allowed(production) is False
    # The setting's name before notifications were named as such is still read.
    monkeypatch.setenv("CONNXT_ALLOW_PRIVATE_WEBHOOK_URLS", "true")
    assert Settings().allow_private_notification_urls is True


@pytest.mark.parametrize(
    ("served_name", "verified"), [("merchant.test", True), ("other.test", False)]
)
def test_tls_is_verified_for_the_name_while_connecting_to_the_checked_address(
    network, tmp_path, served_name, verified
):
    import ssl

    cert_file, key_file = self_signed(tmp_path, served_name)
    with receiver() as standin:
        server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_tls.load_cert_chain(cert_file, key_file)
        standin.socket = server_tls.wrap_socket(standin.socket, server_side=True)
        network["standin"] = standin
        trust = ssl.create_default_context(cafile=cert_file)
        url = f"https://merchant.test:{standin.port}/hook"
        with MerchantClient(5, allow_private=False, ssl_context=trust) as http:
            if verified:
                assert http.post(url, b"{}", {}) == 204
                assert standin.hits == [("/hook", f"merchant.test:{standin.port}")]
            else:
                with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    http.post(url, b"{}", {})
                assert standin.hits == []


def _trickle(first: bytes) -> RawServer:
    """A merchant that reads the connection's first bytes, then sends ``first`` and more,
    one byte every 0.2 s: each read waits far less than the read timeout."""

    def serve(conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            for byte in first + b"." * 10_000:
                conn.sendall(bytes([byte]))
                time.sleep(0.2)
        except OSError:
            return

    return RawServer(serve)


@pytest.mark.parametrize(
    ("scheme", "first"),
    [
        ("http", b"HTTP/1.1 200 OK\r\nX-Slow: "),
        # A TLS record header announcing 16 KiB of handshake, then the rest at that pace.
        ("https", b"\x16\x03\x03\x40\x00"),
    ],
    ids=["answer", "tls-handshake"],
)
def test_a_merchant_that_trickles_is_cut_off_at_the_attempts_deadline(scheme, first):
    server = _trickle(first)
    try:
        with MerchantClient(timeout=1.0, allow_private=True) as http:
            started = time.monotonic()
            with pytest.raises(DeadlineExceeded):
                http.post(f"{scheme}://127.0.0.1:{server.port}/hook", b"{}", {})
            took = time.monotonic() - started
    finally:
        server.close()
    assert 1.0 <= took < 1.6
