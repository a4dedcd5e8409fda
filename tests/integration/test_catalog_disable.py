"""`connxt catalog disable`: a flow target or one of its actions taken out of service.

Step 1 shows it DISABLED, Step 2 refuses to register it and Step 3 to run it, each with a
400 naming the field; a running ingress follows within ``CONNXT_CATALOG_CACHE_SECONDS``.
"""

from __future__ import annotations

import time

import pytest

from connxt.settings import get_settings
from tests.support.cli import cli
from tests.support.flows import V2, create_psp, target, transaction_body
from tests.support.stack import wait_until

STICPAY = {"merchantEmail": "m@example.com", "apiKey": "stic_disable"}


def catalog(*args: str) -> None:
    done = cli("catalog", *args)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def sticpay(client, tenant):
    """A Sticpay PSP registered while the target was enabled; the catalog is enabled again
    afterwards and every cache has forgotten the disable before the next test."""
    _, headers = tenant
    flow_target = target(client, headers, "Sticpay")
    psp = create_psp(client, headers, flow_target, STICPAY)
    yield headers, flow_target, psp
    catalog("enable", "--target", "Sticpay")
    catalog("enable", "--target", "Sticpay", "--action", "WITHDRAW")
    time.sleep(get_settings().catalog_cache_seconds + 0.5)


def step3(client, headers, psp, flow_target, action="DEPOSIT"):
    body = transaction_body(psp, flow_target, action)
    return client.post(
        f"{V2}/transactions", headers={**headers, "Prefer": "respond-async"}, json=body
    )


def refused_on(answer, field: str) -> bool:
    return answer.status_code == 400 and [e["field"] for e in answer.json()["errors"]] == [field]


def test_a_disabled_target_is_shown_and_refused_by_steps_2_and_3(client, sticpay):
    headers, flow_target, psp = sticpay
    catalog("disable", "--target", "Sticpay")

    shown = target(client, headers, "Sticpay")
    assert shown["status"] == "DISABLED"
    assert target(client, headers, "Paymaxis")["status"] == "ENABLED"

    deposit = next(a for a in shown["actions"] if a["name"] == "DEPOSIT")
    again = client.post(
        f"{V2}/psps/external",
        headers=headers,
        json={
            "name": "Another",
            "credential": '{"merchantEmail": "m@example.com", "apiKey": "k"}',
            "flowTargetId": flow_target["id"],
            "operations": [
                {
                    "flowActionId": deposit["id"],
                    "flowDefinitionId": deposit["definition"]["id"],
                    "status": "ENABLED",
                }
            ],
        },
    )
    assert refused_on(again, "flowTargetId"), again.text
    wait_until(
        lambda: refused_on(step3(client, headers, psp, flow_target), "flowTargetId"),
        timeout=get_settings().catalog_cache_seconds + 2,
        what="Step 3 refusing the disabled target",
    )


def test_a_disabled_action_is_shown_and_refused_while_the_others_run(client, sticpay):
    headers, flow_target, psp = sticpay
    catalog("disable", "--target", "Sticpay", "--action", "WITHDRAW")

    actions = {a["name"]: a for a in target(client, headers, "Sticpay")["actions"]}
    assert actions["WITHDRAW"]["status"] == "DISABLED"
    assert actions["DEPOSIT"]["status"] == "ENABLED"

    withdraw = actions["WITHDRAW"]
    enable_it = client.patch(
        f"{V2}/psps/{psp['id']}",
        headers=headers,
        json={
            "operations": [
                {
                    "flowActionId": withdraw["id"],
                    "flowDefinitionId": withdraw["definition"]["id"],
                    "status": "ENABLED",
                }
            ]
        },
    )
    assert refused_on(enable_it, "operations[0].flowActionId"), enable_it.text
    wait_until(
        lambda: refused_on(step3(client, headers, psp, flow_target, "WITHDRAW"), "flowActionId"),
        timeout=get_settings().catalog_cache_seconds + 2,
        what="Step 3 refusing the disabled action",
    )
    assert step3(client, headers, psp, flow_target, "DEPOSIT").status_code == 202


@pytest.mark.integration
def test_a_running_ingress_follows_a_disable_within_the_stated_bound(api, tenant, sticpay):
    _, headers = tenant
    flow_target = target(api, headers, "Sticpay")
    psp = create_psp(api, headers, flow_target, STICPAY, name="Running")
    # Cached by the ingress now: what it must stop trusting.
    assert step3(api, headers, psp, flow_target).status_code == 202

    catalog("disable", "--target", "Sticpay")
    disabled_at = time.monotonic()
    wait_until(
        lambda: refused_on(step3(api, headers, psp, flow_target), "flowTargetId"),
        timeout=30,
        interval=0.2,
        what="the running ingress refusing the disabled target",
    )
    # The bound the README states: one catalog cache lifetime (plus a request's time).
    assert time.monotonic() - disabled_at <= get_settings().catalog_cache_seconds + 1.0
