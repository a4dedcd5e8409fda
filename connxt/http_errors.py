"""Connxt's own names for what goes wrong on an outgoing HTTP call (connxt.http_wire).

An attempt's recorded error is the class name (``ReadTimeout``, ``ConnectError``, ...), so
the names are the ones a reader of PSP exchanges and notification attempts already knows
(httpx's, which both wires once raised); what the standard library raises is translated
here once, for every caller.

    TransportError                no usable answer came back
    ├── TimeoutException
    │   ├── ConnectTimeout        no connection within the connect timeout
    │   ├── ReadTimeout           a read waited longer than the read timeout
    │   ├── WriteTimeout          a write waited longer than the timeout
    │   └── DeadlineExceeded      the call as a whole ran past its deadline
    ├── NetworkError
    │   ├── ConnectError          refused, unreachable, no such name, TLS not verified
    │   ├── ReadError             the connection broke while the answer was read
    │   └── WriteError            the connection broke while the request was sent
    ├── RemoteProtocolError       the peer broke HTTP (or hung up unanswered)
    ├── ProxyError                the proxy would not carry the call
    ├── AnswerTooLarge            the answer ran past the cap its caller set
    └── UnsupportedProtocol       not an http(s) URL
"""

from __future__ import annotations

import http.client
from typing import Literal

Phase = Literal["connect", "write", "read"]


class TransportError(Exception):
    """No usable answer came back: for a PSP call, an unknown outcome."""


class TimeoutException(TransportError):
    pass


class ConnectTimeout(TimeoutException):
    pass


class ReadTimeout(TimeoutException):
    pass


class WriteTimeout(TimeoutException):
    pass


class DeadlineExceeded(TimeoutException):
    """The call ran past its total deadline, however its peer paced its bytes."""


class NetworkError(TransportError):
    pass


class ConnectError(NetworkError):
    pass


class ReadError(NetworkError):
    pass


class WriteError(NetworkError):
    pass


class RemoteProtocolError(TransportError):
    pass


class ProxyError(TransportError):
    pass


class AnswerTooLarge(TransportError):
    pass


class UnsupportedProtocol(TransportError):
    pass


def translated(
    exc: BaseException, phase: Phase = "read", peer: str = "the server"
) -> TransportError:
    """A failure of the standard library's sockets or ``http.client``, met while
    connecting, sending the request or reading the answer, under Connxt's name."""
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, TimeoutError):
        kind: type[TransportError] = {
            "connect": ConnectTimeout,
            "write": WriteTimeout,
            "read": ReadTimeout,
        }[phase]
        return kind(str(exc) or "timed out")
    if isinstance(exc, http.client.RemoteDisconnected):
        return RemoteProtocolError(f"{peer} closed the connection unanswered")
    if isinstance(exc, http.client.IncompleteRead):
        return RemoteProtocolError(f"{peer} closed the connection mid-answer")
    if isinstance(exc, http.client.HTTPException):
        return RemoteProtocolError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, OSError):  # ssl.SSLError too: a certificate not verified, say
        kind = {"connect": ConnectError, "write": WriteError, "read": ReadError}[phase]
        return kind(str(exc) or type(exc).__name__)
    return TransportError(f"{type(exc).__name__}: {exc}")
