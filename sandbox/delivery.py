"""Asynchronous PSP notifications, retried the way a PSP retries them.

A notice is sent from a background task after the answer that caused it, never inline: a
merchant must cope with a webhook that arrives before, after, or without the redirect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import structlog

log = structlog.get_logger()

# Waits before each retry: 8 tries spread over about a minute.
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
ATTEMPT_TIMEOUT = 5.0


class Deliverer:
    def __init__(self, delay_ms: Callable[[], int]):
        self._delay_ms = delay_ms  # read at send time: /_control may change it
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, url: str | None, body: bytes, headers: dict[str, str], **fields) -> None:
        """Schedule delivery of ``body`` to ``url``; call from a handler on the event loop."""
        if not url:
            log.info("sandbox.webhook.no_url", **fields)
            return
        task = asyncio.get_running_loop().create_task(self._deliver(url, body, headers, fields))
        # Keep a reference: the loop holds tasks weakly.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self, url: str, body: bytes, headers: dict[str, str], fields: dict[str, object]
    ) -> None:
        delay = self._delay_ms()
        if delay:
            await asyncio.sleep(delay / 1000)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=ATTEMPT_TIMEOUT)
        for attempt, wait in enumerate((*RETRY_DELAYS, None), start=1):
            try:
                response = await self._client.post(url, content=body, headers=headers)
                status: int | None = response.status_code
            except httpx.HTTPError as exc:
                status = None
                log.info(
                    "sandbox.webhook.error",
                    url=url,
                    attempt=attempt,
                    error=type(exc).__name__,
                    **fields,
                )
            if status is not None and 200 <= status < 300:
                log.info(
                    "sandbox.webhook.delivered",
                    url=url,
                    attempt=attempt,
                    status_code=status,
                    **fields,
                )
                return
            if status is not None:
                log.info(
                    "sandbox.webhook.refused",
                    url=url,
                    attempt=attempt,
                    status_code=status,
                    **fields,
                )
            if wait is None:
                break
            await asyncio.sleep(wait)
        log.warning("sandbox.webhook.gave_up", url=url, attempts=len(RETRY_DELAYS) + 1, **fields)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
