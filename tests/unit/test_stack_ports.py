"""The test stack's ports: a reserved port is given to no one else, and a server counts as
started only when the process started for it holds the listening socket (someone else's
server answering on the port once made every token of a run look revoked)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.support.stack import free_port, listens, reserved_port, wait_until

LISTEN = """
import socket, sys, time
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen()
print("listening", flush=True)
time.sleep(60)
"""


@pytest.fixture
def listener():
    """Factory: a process of its own (its own process group) listening on a port."""
    started: list[subprocess.Popen] = []

    def start(port: int) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", LISTEN, str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        started.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def test_a_reserved_port_is_given_to_no_other_bind_or_connect():
    port = reserved_port()
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))
    given = set()
    for _ in range(3000):
        with socket.socket() as any_port:
            any_port.bind(("127.0.0.1", 0))
            given.add(any_port.getsockname()[1])
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        for _ in range(500):
            with socket.create_connection(server.getsockname()) as outgoing:
                given.add(outgoing.getsockname()[1])
            server.accept()[0].close()
    assert port not in given
    assert len(given) > 1000  # the kernel did hand out ports, just never this one


def test_a_server_binds_and_listens_on_its_reserved_port(listener):
    port = reserved_port()
    proc = listener(port)
    assert listens(proc.pid, port)


def test_a_port_counts_as_served_only_by_the_group_that_listens_on_it(listener):
    port, elsewhere = free_port(), free_port()
    proc = listener(port)
    assert not listens(proc.pid, elsewhere)
    with socket.socket() as own:  # this process listening does not make it the child's
        own.bind(("127.0.0.1", 0))
        own.listen()
        assert not listens(proc.pid, own.getsockname()[1])
    proc.kill()
    proc.wait()
    assert not listens(proc.pid, port)


def test_waiting_stops_at_once_when_the_awaited_process_is_gone():
    from tests.support.stack import Exited

    calls = []

    def gone() -> bool:
        calls.append(1)
        raise Exited("it exited")

    with pytest.raises(Exited):
        wait_until(gone, timeout=5)
    assert len(calls) == 1
