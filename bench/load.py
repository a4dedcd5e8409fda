"""A bounded asyncio load generator: N requests, C at a time, never past a deadline."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

# One request: given the client and its index, send it and return (ok, what, value).
# ``what`` names the outcome ("200", "200 PG_INITIATED", "ConnectError", ...).
Request = Callable[[httpx.AsyncClient, int], Awaitable[tuple[bool, str, Any]]]


@dataclass
class LoadResult:
    name: str
    sent: int = 0
    ok: int = 0
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)  # of every answered request
    outcomes: Counter = field(default_factory=Counter)
    values: dict[int, Any] = field(default_factory=dict)  # index → value of ok requests
    timed_out: bool = False

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.wall_s if self.wall_s else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]

    def merged(self, other: LoadResult, name: str) -> LoadResult:
        """Two runs as one: ok over summed wall time, latencies pooled."""
        return LoadResult(
            name,
            self.sent + other.sent,
            self.ok + other.ok,
            self.wall_s + other.wall_s,
            self.latencies_ms + other.latencies_ms,
            self.outcomes + other.outcomes,
            {},
            self.timed_out or other.timed_out,
        )

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sent": self.sent,
            "ok": self.ok,
            "wall_s": round(self.wall_s, 3),
            "ok_per_s": round(self.ok_per_s, 1),
            "p50_ms": round(self.pct(50), 2),
            "p99_ms": round(self.pct(99), 2),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 2) if self.latencies_ms else None,
            "max_ms": round(max(self.latencies_ms), 2) if self.latencies_ms else None,
            "outcomes": dict(self.outcomes),
            "hit_time_limit": self.timed_out,
        }


async def run_load(
    name: str,
    base_url: str,
    request: Request,
    count: int,
    concurrency: int = 16,
    time_limit_s: float = 60.0,
    request_timeout_s: float = 30.0,
) -> LoadResult:
    """Send ``count`` requests with ``concurrency`` in flight; stop starting at the deadline."""
    result = LoadResult(name)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(request_timeout_s)
    next_index = 0
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:
        start = time.perf_counter()
        deadline = start + time_limit_s

        async def worker() -> None:
            nonlocal next_index
            while next_index < count:
                if time.perf_counter() >= deadline:
                    result.timed_out = True
                    return
                index, next_index = next_index, next_index + 1
                result.sent += 1
                began = time.perf_counter()
                try:
                    ok, what, value = await request(client, index)
                except httpx.HTTPError as exc:
                    result.outcomes[type(exc).__name__] += 1
                    continue
                result.latencies_ms.append((time.perf_counter() - began) * 1000)
                result.outcomes[what] += 1
                if ok:
                    result.ok += 1
                    result.values[index] = value

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.wall_s = time.perf_counter() - start
    return result


async def healthz(client: httpx.AsyncClient, _index: int) -> tuple[bool, str, Any]:
    answer = await client.get("/healthz")
    return answer.status_code == 200, str(answer.status_code), None


async def gather_bounded(items: list[Any], func, concurrency: int = 16) -> list[Any]:
    """``func(item)`` for every item, at most ``concurrency`` at once; results in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(item: Any) -> Any:
        async with gate:
            return await func(item)

    return await asyncio.gather(*(one(item) for item in items))
