"""Sockets opened from inside one of the fleet's hosts, by threads of this process.

A network namespace belongs to a thread, not to a process (setns(2)): a thread that enters
a host's namespace opens its sockets there, and a socket stays in the namespace it was
opened in, whichever thread uses it later. So the test process itself drives the fleet
from its load host and reads the database from there, without a process per client:
``with inside("load"):`` around code that opens connections, or ``enter("load")`` as the
initializer of a pool whose threads live there for good.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns({path}): {os.strerror(errno)}")
    finally:
        os.close(fd)


def host_path(host: str) -> str:
    return f"/run/netns/connxt-{host}"


def enter(host: str) -> None:
    """The calling thread into the host's namespace, for the rest of its life."""
    _setns(host_path(host))


class inside:  # used as a statement: `with inside("load"):`
    """The calling thread in the host's namespace until the block ends, then back."""

    def __init__(self, host: str):
        self.host = host
        self._home: int | None = None

    def __enter__(self) -> inside:
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _setns(host_path(self.host))
        except BaseException:
            os.close(self._home)
            raise
        return self

    def __exit__(self, *_exc) -> None:
        assert self._home is not None
        try:
            if _libc.setns(self._home, CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"setns back: {os.strerror(errno)}")
        finally:
            os.close(self._home)
            self._home = None
