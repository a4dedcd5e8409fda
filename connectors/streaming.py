"""PSP answers read as they arrive, with a cap: what settlement reports come through.

A payment's answer is a few hundred bytes and is read whole (connectors.transport.send). A
settlement report can be hundreds of megabytes, so ``streamed`` hands the body out in
chunks or lines as the socket delivers them and refuses to read past ``cap_bytes``. It is
the same wire as every PSP call (connectors.transport.stream over the process's shared
client, connxt.http_wire): its connect and read timeouts, Connxt's transport errors
(connxt.http_errors), ``connxt_psp_request_seconds`` and its log line; only the cap and
the deadline are a report's own (``CONNXT_SETTLEMENT_REPORT_DEADLINE_SECONDS``: a day's
file is minutes of reading where a payment's answer is seconds).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from connectors.transport import shared_client, stream
from connxt.http_wire import Stream
from connxt.settings import get_settings


class Streamed:
    """An answer whose body is still on the wire: read it once, whole, as chunks or lines."""

    def __init__(self, answer: Stream):
        self._answer = answer
        self.status_code = answer.status

    def header(self, name: str) -> str | None:
        return next((v for k, v in self._answer.headers if k.lower() == name.lower()), None)

    def chunks(self) -> Iterator[bytes]:
        return self._answer.chunks(256 * 1024)

    def lines(self) -> Iterator[bytes]:
        """Each line without its ending (``\\n`` or ``\\r\\n``); the last even unterminated."""
        return self._answer.lines(256 * 1024)

    def read(self) -> bytes:
        return self._answer.read()


@contextmanager
def streamed(
    method: str,
    url: str,
    *,
    psp: str,
    cap_bytes: int,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Iterator[Streamed]:
    """One request; the answer's body is read inside the block. Raises
    connxt.http_errors.TransportError for transport failures, timeouts and the deadline,
    and AnswerTooLarge past ``cap_bytes``."""
    with stream(
        shared_client(),
        method,
        url,
        body=body,
        headers=headers,
        psp=psp,
        max_bytes=cap_bytes,
        deadline=get_settings().settlement_report_deadline_seconds,
    ) as answer:
        yield Streamed(answer)
