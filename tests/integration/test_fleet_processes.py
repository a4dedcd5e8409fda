"""What a fleet asks of each process, checked on real processes: an ingress drains on
SIGTERM, trusts X-Forwarded-For only from the proxies named, keeps its metrics off the public
port; metrics listen on loopback unless told; Flower refuses to listen beyond loopback
without a sign-in; the container health checks shipped in deploy/ pass on a live process
and fail on a dead one."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.flows import V2, paymaxis_psp, transaction_body
from tests.support.stack import Stack, free_port, wait_until

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CONNXT = str(Path(sys.executable).parent / "connxt")


@pytest.fixture
def own_api(db, tmp_path):
    """An API process (and a sandbox) of the test's own, started with settings it names."""
    started: list[Stack] = []

    def start(**env: str) -> Stack:
        stack = Stack(env, tmp_path / f"run{len(started)}")
        stack.log_dir.mkdir()
        started.append(stack)
        stack.start_sandbox()
        stack.start_api()
        return stack

    yield start
    for stack in started:
        stack.stop()


def one_shot(method: str, url: str, **kwargs) -> httpx.Response:
    """A request on a connection of its own, as the shipped haproxy sends them
    (http-server-close): no kept-alive connection to race with the server's close."""
    with httpx.Client(timeout=40, headers={"Connection": "close"}) as client:
        return client.request(method, url, **kwargs)


def test_an_ingress_drains_on_sigterm_and_drops_nothing(own_api, make_tenant):
    stack = own_api(CONNXT_DRAIN_SECONDS="5", CONNXT_SHUTDOWN_GRACE_SECONDS="10")
    _, headers = make_tenant("drain", "live")
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        flow_target, psp, _ = paymaxis_psp(client, stack.sandbox_url, headers)
    body = transaction_body(psp, flow_target)
    url = f"{stack.api_url}{V2}/transactions"
    asynchronous = {**headers, "Prefer": "respond-async"}

    outcomes: dict[str, list] = {"answered": [], "failed": []}
    routed = threading.Event()  # as a balancer routes to this process while it is ready
    routed.set()
    stop = threading.Event()

    def send_steadily() -> None:
        while not stop.is_set():
            if not routed.is_set():
                time.sleep(0.05)
                continue
            sent_at = time.monotonic()
            try:
                # Answered once stored (no worker initiates for this stack).
                answer = one_shot("POST", url, headers=asynchronous, json=body)
            except httpx.HTTPError as exc:  # refused, reset or never answered
                outcomes["failed"].append((sent_at, repr(exc)))
                continue
            (outcomes["answered"] if answer.status_code < 500 else outcomes["failed"]).append(
                (sent_at, answer.status_code)
            )

    def balancer_check() -> None:
        """The shipped haproxy check (deploy/haproxy/haproxy.cfg: /readyz every second, out
        after two failures): a client routed by it stops sending here in time."""
        failures = 0
        while not stop.is_set() and routed.is_set():
            try:
                ready = one_shot("GET", f"{stack.api_url}/readyz").status_code == 200
            except httpx.HTTPError:
                ready = False
            failures = 0 if ready else failures + 1
            if failures >= 2:
                routed.clear()
            time.sleep(1)

    sender = threading.Thread(target=send_steadily, daemon=True)
    checker = threading.Thread(target=balancer_check, daemon=True)
    sender.start()
    wait_until(lambda: len(outcomes["answered"]) >= 3, what="requests answered")
    checker.start()

    proc = stack.procs["api"]
    term_at = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    # Not ready at once, while it still serves.
    wait_until(
        lambda: one_shot("GET", f"{stack.api_url}/readyz").status_code == 503,
        timeout=1,
        what="readyz 503",
    )
    assert one_shot("GET", f"{stack.api_url}/readyz").json()["errors"][0]["message"] == "draining"
    assert one_shot("GET", f"{stack.api_url}/healthz").status_code == 200
    wait_until(lambda: not routed.is_set(), timeout=5, what="the balancer to move away")
    moved_away = time.monotonic()
    served_while_draining = [s for s, _ in outcomes["answered"] if s > term_at]
    assert served_while_draining, "requests sent during the drain were not served"

    exit_code = proc.wait(timeout=5 + 10 + 5)
    took = time.monotonic() - term_at
    stop.set()
    sender.join(timeout=40)
    assert exit_code == 0, stack.log("api")[-2000:]
    assert 5 <= took <= 5 + 10 + 3
    # The balancer moved away before the listener closed: nothing sent here was lost.
    assert moved_away < term_at + 5
    assert outcomes["failed"] == [], outcomes["failed"]
    assert all(code in (200, 202) for _, code in outcomes["answered"])
    print(
        f"drain: {len(outcomes['answered'])} answered ({len(served_while_draining)} during "
        f"the drain), 0 failed; routed away {moved_away - term_at:.1f} s after SIGTERM, "
        f"exit in {took:.1f} s"
    )


def test_a_request_waiting_for_its_outcome_is_answered_when_the_ingress_stops(own_api, make_tenant):
    """Nothing signals this process (its hand-off channel is its own), so the request would
    wait its whole bound; at the end of the drain it is answered from the row instead (202
    while undecided; 200 where the suite's own worker happened to initiate it meanwhile)."""
    stack = own_api(
        CONNXT_DRAIN_SECONDS="1",
        CONNXT_INITIATION_WAIT_SECONDS="60",
        CONNXT_BROKER_KEY_PREFIX=f"nobody-{secrets.token_hex(4)}:",
    )
    _, headers = make_tenant("waiting", "live")
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        flow_target, psp, _ = paymaxis_psp(client, stack.sandbox_url, headers)
    answers: list[httpx.Response] = []
    waiting = threading.Thread(
        target=lambda: answers.append(
            one_shot(
                "POST",
                f"{stack.api_url}{V2}/transactions",
                headers=headers,
                json=transaction_body(psp, flow_target),
            )
        )
    )
    waiting.start()
    time.sleep(1.5)
    started = time.monotonic()
    stack.procs["api"].send_signal(signal.SIGTERM)
    waiting.join(timeout=15)
    assert answers and answers[0].status_code in (200, 202), answers
    assert time.monotonic() - started < 8
    assert stack.procs["api"].wait(timeout=15) == 0


def guesses(url: str, forwarded_for: str, count: int) -> list[int]:
    return [
        one_shot(
            "GET",
            f"{url}{V2}/flow-types/definitions",
            params={"type": "PSP"},
            headers={
                "X-SECRET-TOKEN": "sec_" + secrets.token_hex(24),
                "X-Forwarded-For": forwarded_for,
            },
        ).status_code
        for _ in range(count)
    ]


@pytest.mark.parametrize("trusted", [False, True], ids=["peer-untrusted", "peer-trusted"])
def test_x_forwarded_for_counts_only_from_a_trusted_proxy(own_api, redis_client, trusted):
    prefix = f"xff-{secrets.token_hex(4)}:"
    stack = own_api(
        CONNXT_TRUSTED_PROXIES="127.0.0.1" if trusted else "10.203.0.99",
        CONNXT_BROKER_KEY_PREFIX=prefix,
        CONNXT_AUTH_FAILURE_LIMIT="5",
    )
    try:
        assert guesses(stack.api_url, "198.51.100.7", 6)[-1] == 429
        other = guesses(stack.api_url, "198.51.100.8", 1)[0]
        # Behind a trusted proxy each forwarded client has its own count; from an untrusted
        # peer the header is ignored, and the peer's own count is what it spent.
        assert other == (401 if trusted else 429)
    finally:
        for key in redis_client.scan_iter(f"{prefix}*"):
            redis_client.delete(key)


def test_metrics_are_off_the_public_port_and_on_loopback(own_api):
    stack = own_api()
    assert one_shot("GET", f"{stack.api_url}/metrics").status_code == 404
    scraped = one_shot("GET", f"http://127.0.0.1:{stack.api_metrics_port}/metrics")
    assert scraped.status_code == 200 and "connxt_" in scraped.text
    listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
    assert f"127.0.0.1:{stack.api_metrics_port} " in listening
    assert f"0.0.0.0:{stack.api_metrics_port} " not in listening


def test_flower_refuses_to_listen_beyond_loopback_without_a_sign_in(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    done = subprocess.run(
        [CONNXT, "flower", "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert "refusing to listen on 0.0.0.0 without authentication" in done.stderr


def compose_check(service: str) -> list[str]:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    test = compose["services"][service]["healthcheck"]["test"]
    kind, *command = test
    assert kind in ("CMD", "CMD-SHELL")
    # Compose's $$ is a literal $.
    command = [part.replace("$$", "$") for part in command]
    return ["sh", "-c", command[0]] if kind == "CMD-SHELL" else command


def k8s_worker_probes() -> list[list[str]]:
    commands = []
    for name in ("worker-psp.yaml", "worker-shared.yaml"):
        for doc in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()):
            container = doc["spec"]["template"]["spec"]["containers"][0]
            assert "--no-supervise" in container["args"]
            commands.append(container["livenessProbe"]["exec"]["command"])
    return commands


def run_check(command: list[str], env: dict[str, str]) -> int:
    if command[0] == "connxt":
        command = [CONNXT, *command[1:]]
    return subprocess.run(command, env=env, capture_output=True, timeout=60).returncode


def test_the_shipped_worker_health_checks_tell_a_live_worker_from_a_dead_one(stack):
    """The compose healthcheck and every Kubernetes liveness probe of a worker, run as the
    platform runs them: against the suite's running worker (alive) and against a broker
    namespace where no worker runs (dead)."""
    checks = [compose_check("worker-psp-paymaxis"), *k8s_worker_probes()]
    assert len({tuple(check) for check in checks}) == 1  # one check, used everywhere
    alive = {**os.environ}
    dead = {**os.environ, "CONNXT_BROKER_KEY_PREFIX": f"nobody-{secrets.token_hex(4)}:"}
    if os.environ.get("CONNXT_BROKER_URL", "").startswith("amqp"):
        dead["CONNXT_BROKER_URL"] = re.sub(r"/[^/]*$", "/nobody", os.environ["CONNXT_BROKER_URL"])
    assert run_check(checks[0], alive) == 0
    assert run_check(checks[0], dead) != 0


def test_the_shipped_http_health_checks_tell_a_live_process_from_a_dead_one(stack):
    """The api's and beat's compose checks (Python one-liners on the process's own port)
    against the running processes, and against a port where nothing listens."""
    for service, port in (("api", stack.api_port), ("beat", stack.beat_metrics_port)):
        check = compose_check(service)
        script = check[-1]
        default = {"api": "8000", "beat": "9102"}[service]
        assert default in script
        assert run_check([*check[:-1], script.replace(default, str(port))], {**os.environ}) == 0
        dead = script.replace(default, str(free_port()))
        assert run_check([*check[:-1], dead], {**os.environ}) != 0
    api = yaml.safe_load_all((DEPLOY / "k8s" / "api.yaml").read_text())
    probes = next(api)["spec"]["template"]["spec"]["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        path = probes[probe]["httpGet"]["path"]
        assert httpx.get(f"{stack.api_url}{path}", timeout=5).status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{free_port()}{path}", timeout=5)
