"""Redis down or hung: the ingress stays ready and accepts durably, and no wait on Redis
outlasts its bound.

"Down" is a port nobody listens on (connections refused at once); "hung" is a server that
accepts connections and never answers, which only timeouts can get out of.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis
import sqlalchemy

from connxt import redis as redis_clients
from connxt.handoff import OutcomeWaiter
from connxt.settings import get_settings
from tests.support.flows import V2, create_psp, target, transaction_body
from tests.support.servers import RawServer
from tests.support.stack import free_port


def _never_answer(conn: socket.socket) -> None:
    """A hung Redis: reads whatever comes, never answers."""
    with contextlib.suppress(OSError):
        while conn.recv(65536):
            pass


@pytest.fixture(params=["down", "hung"])
def broken_redis(request) -> Iterator[str]:
    if request.param == "down":
        yield f"redis://127.0.0.1:{free_port()}/0"
        return
    hung = RawServer(_never_answer)
    yield f"redis://127.0.0.1:{hung.port}/0"
    hung.close()


@contextlib.contextmanager
def redis_at(url: str) -> Iterator[None]:
    """This process's settings and Redis clients pointed at ``url`` for a while."""
    saved = {k: os.environ.get(k) for k in ("CONNXT_REDIS_URL", "CONNXT_INITIATION_WAIT_SECONDS")}

    def reset() -> None:
        get_settings.cache_clear()
        redis_clients.get_redis.cache_clear()
        redis_clients._async_clients.clear()

    os.environ.update(CONNXT_REDIS_URL=url, CONNXT_INITIATION_WAIT_SECONDS="1")
    reset()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset()


@pytest.fixture
def ingress(db, broken_redis):
    """A fresh ingress (its lifespan run) whose Redis is broken."""
    from fastapi.testclient import TestClient

    from api_gateway.app import create_app

    with redis_at(broken_redis), TestClient(create_app(), raise_server_exceptions=False) as client:
        yield client


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_readyz_stays_ready_while_only_redis_is_away(ingress):
    answer, took = timed(lambda: ingress.get("/readyz"))
    assert answer.status_code == 200, answer.text
    checks = answer.json()["data"]
    assert checks["database"] == "ok"
    assert checks["redis"] != "ok"
    assert took < 2.5  # bounded, well inside a readiness probe's timeout


def test_readyz_is_not_ready_without_the_database(db):
    from fastapi.testclient import TestClient

    from api_gateway.app import create_app

    saved = os.environ["CONNXT_DATABASE_URL"]
    os.environ["CONNXT_DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"
    get_settings.cache_clear()
    try:
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            answer, took = timed(lambda: client.get("/readyz"))
    finally:
        os.environ["CONNXT_DATABASE_URL"] = saved
        get_settings.cache_clear()
    assert answer.status_code == 503, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["database"]
    assert took < 2.5


def test_readyz_answers_within_its_bound_when_the_database_goes_silent(db):
    """A partition between an api host and PostgreSQL: the pool's connections stay open
    and nothing comes back. The probe answers 503 within its bound all the same, although
    abandoning the ping makes psycopg ask the server to cancel it, over a network that
    does not answer either (seconds); a balancer checking every second takes the host out
    after its own bound, not after psycopg's."""
    from fastapi.testclient import TestClient

    from api_gateway.app import create_app

    url = sqlalchemy.make_url(os.environ["CONNXT_DATABASE_URL"])
    proxy = FreezableProxy((url.host or "127.0.0.1", url.port or 5432))
    saved = os.environ["CONNXT_DATABASE_URL"]
    os.environ["CONNXT_DATABASE_URL"] = url.set(host="127.0.0.1", port=proxy.port).render_as_string(
        hide_password=False
    )
    get_settings.cache_clear()
    try:
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            assert client.get("/readyz").status_code == 200
            proxy.frozen.set()
            probes = [timed(lambda: client.get("/readyz")) for _ in range(3)]
    finally:
        os.environ["CONNXT_DATABASE_URL"] = saved
        get_settings.cache_clear()
        proxy.close()
    assert [answer.status_code for answer, _ in probes] == [503, 503, 503], probes
    assert max(took for _, took in probes) < 2.0, [round(took, 2) for _, took in probes]


def test_an_ingress_started_before_its_database_serves_once_it_answers(db):
    """PostgreSQL away while the ingress starts (a restart, a full connection limit): it
    starts anyway, not ready; once PostgreSQL answers it is ready and stores requests."""
    from fastapi.testclient import TestClient

    from api_gateway.app import create_app

    url = sqlalchemy.make_url(os.environ["CONNXT_DATABASE_URL"])
    port = free_port()
    saved = os.environ["CONNXT_DATABASE_URL"]
    os.environ["CONNXT_DATABASE_URL"] = url.set(host="127.0.0.1", port=port).render_as_string(
        hide_password=False
    )
    get_settings.cache_clear()
    proxy = None
    try:
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            assert client.get("/readyz").status_code == 503
            proxy = FreezableProxy((url.host or "127.0.0.1", url.port or 5432), port=port)
            deadline = time.monotonic() + 20
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "never ready after PostgreSQL came back"
                time.sleep(0.5)
    finally:
        os.environ["CONNXT_DATABASE_URL"] = saved
        get_settings.cache_clear()
        if proxy is not None:
            proxy.close()


def test_step3_is_stored_and_answered_within_its_bounds_without_redis(ingress, make_tenant):
    _, headers = make_tenant("no-redis", "live")
    flow_target = target(ingress, headers, "Paymaxis")
    psp = create_psp(ingress, headers, flow_target, {"apiKey": "pmx_no_redis"})
    body = transaction_body(psp, flow_target)
    keyed = {**headers, "Idempotency-Key": "no-redis-1", "Prefer": "respond-async"}
    accepted, took = timed(lambda: ingress.post(f"{V2}/transactions", headers=keyed, json=body))
    assert accepted.status_code == 202, accepted.text
    assert took < 5  # the in-flight marker is skipped after its timeout
    # The waiting path: no wake-up can come, so it answers from PostgreSQL at its bound
    # (200 when a worker of the suite's stack happened to decide it by then, else 202).
    waited, took = timed(lambda: ingress.post(f"{V2}/transactions", headers=headers, json=body))
    assert waited.status_code in (200, 202), waited.text
    assert took < 5
    stored = ingress.get(f"{V2}/transactions", headers=headers).json()["data"]["items"]
    assert len(stored) == 2


def test_every_redis_client_gives_up_within_its_bounds(broken_redis):
    from workers.app import celery_app
    from workers.locks import transaction_locks

    with redis_at(broken_redis):
        for kwargs in (
            redis_clients.get_redis().connection_pool.connection_kwargs,
            asyncio.run(_async_client_kwargs()),
        ):
            assert 0 < kwargs["socket_timeout"] <= 5
            assert 0 < kwargs["socket_connect_timeout"] <= 5
        started = time.monotonic()
        with pytest.raises(redis.RedisError), transaction_locks(["txn_x"]):
            pass
        assert time.monotonic() - started < 7
    options = celery_app.conf.broker_transport_options
    assert 0 < options["socket_timeout"] <= 5 and 0 < options["socket_connect_timeout"] <= 5


async def _async_client_kwargs() -> dict:
    return redis_clients.get_async_redis().connection_pool.connection_kwargs


class FreezableProxy:
    """A TCP proxy to a real server that can go silent, as a network partition would:
    connections stay open, nothing passes any more."""

    def __init__(self, upstream: tuple[str, int], port: int = 0) -> None:
        self.upstream = upstream
        self.frozen = threading.Event()
        self._upstreams: list[socket.socket] = []
        self._server = RawServer(self._serve, port)
        self.port = self._server.port

    @property
    def accepted(self) -> int:
        return self._server.accepted

    def _serve(self, client: socket.socket) -> None:
        server = socket.create_connection(self.upstream)
        self._upstreams.append(server)
        threading.Thread(target=self._pump, args=(server, client), daemon=True).start()
        self._pump(client, server)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not self.frozen.is_set():
                    dst.sendall(data)

    def close(self) -> None:
        self._server.close()
        for conn in self._upstreams:
            with contextlib.suppress(OSError):
                conn.close()


def test_the_outcome_subscription_gives_up_a_connection_gone_silent(redis_client):
    parsed = redis.connection.parse_url(get_settings().redis_url)
    proxy = FreezableProxy((parsed.get("host", "127.0.0.1"), parsed.get("port", 6379)))
    url = f"redis://127.0.0.1:{proxy.port}/{parsed.get('db', 0)}"
    channel = f"{get_settings().broker_key_prefix}silence-test"

    async def run() -> tuple[bool, int]:
        waiter = OutcomeWaiter(url, channel, heartbeat=0.3)
        waiter.start()
        try:
            woken = waiter.expect("txn_1")
            # Subscribed through the proxy: a signal arrives.
            deadline = time.monotonic() + 5
            while not woken.signalled and time.monotonic() < deadline:
                redis_client.publish(channel, "txn_1")
                await asyncio.sleep(0.1)
            proxy.frozen.set()
            deadline = time.monotonic() + 5
            while proxy.accepted < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        finally:
            await waiter.close()
        return woken.signalled, proxy.accepted

    try:
        signalled, connections = asyncio.run(run())
    finally:
        proxy.close()
    assert signalled
    # A second connection: the silent one was given up and made again, within seconds.
    assert connections >= 2
