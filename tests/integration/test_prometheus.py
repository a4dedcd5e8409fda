"""A real Prometheus scrapes every process of the running stack and finds the deposits.

Prometheus (Debian's package, installed by deploy/services.sh for the tests) runs with the
scrape jobs of deploy/prometheus/prometheus.yml pointed at the test stack's ports, every
second, and with deploy/prometheus/alerts.yml loaded. The alert rules themselves are
checked by `promtool` here (and in .ci/run), their firing by `promtool test rules`.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.flows import V2, paymaxis_psp, transaction_body
from tests.support.stack import free_port, wait_until

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
JOBS = ("connxt-api", "connxt-worker", "connxt-beat")


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [shutil.which("promtool") or "/usr/bin/promtool", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=DEPLOY,
    )


def test_alert_rules_are_valid_and_fire_on_their_series():
    checked = _promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout
    tested = _promtool("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.fixture
def prometheus(stack, tmp_path):
    """Prometheus scraping the stack's api, worker and beat every second."""
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    ports = {
        "connxt-api": stack.api_metrics_port,
        "connxt-worker": stack.worker_metrics_port,
        "connxt-beat": stack.beat_metrics_port,
    }
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(DEPLOY / "alerts.yml")]
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 (lives with the process)
    proc = subprocess.Popen(
        [
            shutil.which("prometheus") or "/usr/bin/prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{url}/-/ready", timeout=1).status_code == 200,
            timeout=30,
            what="prometheus ready",
        )
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def _query(url: str, promql: str) -> list[dict]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def _value(url: str, promql: str) -> float:
    result = _query(url, promql)
    return float(result[0]["value"][1]) if result else 0.0


def test_prometheus_scrapes_every_process_and_counts_the_deposits(api, stack, tenant, prometheus):
    _, headers = tenant
    flow_target, psp, _ = paymaxis_psp(api, stack.sandbox_url, headers)

    def scraped() -> dict[str, str]:
        return {r["metric"]["job"]: r["value"][1] for r in _query(prometheus, "up")}

    wait_until(lambda: scraped() == dict.fromkeys(JOBS, "1"), timeout=30, what="all jobs up")
    accepted = (
        'sum(connxt_psp_call_seconds_count{job="connxt-worker",psp="Paymaxis",'
        'action="initiate",result="ACCEPTED"})'
    )
    created = 'sum(connxt_transitions_total{job="connxt-api",to_status="CREATED"})'
    time.sleep(2)  # a scrape after the jobs came up: the baseline
    before = (_value(prometheus, accepted), _value(prometheus, created))

    deposits = 3
    for _ in range(deposits):
        answer = api.post(
            f"{V2}/transactions", headers=headers, json=transaction_body(psp, flow_target)
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"]["status"] == "PG_ACCEPTED", answer.text

    wait_until(
        lambda: (
            _value(prometheus, accepted) - before[0] == deposits
            and _value(prometheus, created) - before[1] == deposits
        ),
        timeout=20,
        what="the deposits in Prometheus",
    )
    # Every process's own series made it: the worker's tasks and PSP latency, beat's
    # sends, and the queue depth as the worker and beat read it (the API never asks the
    # broker for monitoring).
    assert _value(prometheus, 'sum(connxt_task_seconds_count{task="transactions.initiate"})') > 0
    assert _value(prometheus, 'sum(connxt_beat_sent_total{job="connxt-beat"})') > 0
    depth_jobs = {r["metric"]["job"] for r in _query(prometheus, "connxt_queue_depth")}
    assert depth_jobs == {"connxt-worker", "connxt-beat"}
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert {r["name"] for g in rules for r in g["rules"]} >= {
        "ConnxtQueueGrowing",
        "ConnxtPspErrorRate",
        "ConnxtLateSuccess",
    }
