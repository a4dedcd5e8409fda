"""Total deadlines for outgoing calls, enforced by shutting their socket down.

A socket timeout bounds each read, never a call: a peer that sends one byte every few
seconds keeps a call with a 10 s read timeout going for as long as it likes, and with it
the thread (Celery's thread pool ignores task time limits). So every call of
connxt.http_wire has a ``Deadline``, and one thread per process looks at the calls in flight
a few times a second and shuts down the socket of any call past its deadline: the read or
write blocked in the caller's thread returns at once, and the wire reports
``DeadlineExceeded``. Shut down, not closed: ``close`` from another thread leaves a blocked
``recv`` waiting on Linux.

A deadline watches the one connection its call is using (``attach``); the connection is
let go (``detach``) before it goes back to its pool, so a deadline that passes late can
never reach a connection another call has since taken.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import Protocol

# How often the watcher looks: a call ends at most this long after its deadline.
TICK_SECONDS = 0.1


class Shuttable(Protocol):
    def shut(self) -> None:
        """Shut the connection's socket down, from another thread."""


class Deadline:
    """The moment a call must be over by; ``finish`` it when the call is."""

    __slots__ = ("when", "fired", "_connection", "_lock")

    def __init__(self, seconds: float):
        self.when = time.monotonic() + seconds
        self.fired = False
        self._connection: Shuttable | None = None
        self._lock = threading.Lock()
        _watcher.watch(self)

    @property
    def passed(self) -> bool:
        return self.fired or time.monotonic() >= self.when

    def remaining(self) -> float:
        return self.when - time.monotonic()

    def attach(self, connection: Shuttable) -> None:
        with self._lock:
            self._connection = connection
            fired = self.fired
        if fired:  # passed while the call was between connections
            connection.shut()

    def detach(self, connection: Shuttable) -> None:
        with self._lock:
            if self._connection is connection:
                self._connection = None

    def fire(self) -> None:
        with self._lock:
            self.fired = True
            connection = self._connection
            # Under the lock: once detached, the connection is another call's.
            if connection is not None:
                connection.shut()

    def finish(self) -> None:
        _watcher.forget(self)


def shut_down(*sockets: socket.socket | None) -> None:
    for sock in sockets:
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: nothing left to end
                sock.shutdown(socket.SHUT_RDWR)


class _Watcher:
    """The deadlines of the calls in flight, and the thread that enforces them."""

    def __init__(self) -> None:
        self._pid = 0
        self._starting = threading.Lock()

    def _fresh(self) -> None:
        # Per process: a forked child has none of its parent's threads or calls.
        with self._starting:
            if self._pid == os.getpid():
                return
            self._live: set[Deadline] = set()
            self._wake = threading.Condition()
            threading.Thread(target=self._run, name="call-deadlines", daemon=True).start()
            self._pid = os.getpid()

    def watch(self, deadline: Deadline) -> None:
        if self._pid != os.getpid():
            self._fresh()
        with self._wake:
            self._live.add(deadline)
            if len(self._live) == 1:
                self._wake.notify()

    def forget(self, deadline: Deadline) -> None:
        with self._wake:
            self._live.discard(deadline)

    def _run(self) -> None:
        live, wake = self._live, self._wake
        while True:
            with wake:
                while not live:
                    wake.wait()
                now = time.monotonic()
                due = [d for d in live if d.when <= now]
                live.difference_update(due)
            for deadline in due:
                deadline.fire()
            time.sleep(TICK_SECONDS)


_watcher = _Watcher()
