"""Rotating a merchant's notification secret with `connxt tenants rotate-secret`, against
the running stack: during the overlap the sandbox's merchant receiver verifies with the old
secret or the new one, whichever it holds; without an overlap only the new one works."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.cli import cli
from tests.support.console import Merchant, paid_deposit
from tests.support.flows import paymaxis_psp
from tests.support.merchant import (
    deposit,
    notifications_for,
    notified_tenant,
    pay,
    transaction,
)
from tests.support.stack import wait_until

pytestmark = pytest.mark.integration


def merchant_holds(stack, secret: str) -> None:
    answer = httpx.put(f"{stack.sandbox_url}/_control/merchant", json={"secret": secret})
    assert answer.status_code == 200


def rotate(*options: str) -> dict:
    tenant = ("--brand", "rotating", "--environment", "live")
    done = cli("tenants", "rotate-secret", *tenant, *options, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_rotated_secret_signs_beside_the_old_one_during_the_overlap(api, stack, make_tenant):
    issued, headers = notified_tenant(stack, make_tenant, brand="rotating")
    merchant = Merchant(issued, headers, *paymaxis_psp(api, stack.sandbox_url, headers))

    rotated = rotate("--overlap", "600")
    assert rotated["environmentId"] == issued.environment_id
    assert rotated["previousSecretSignsUntil"] is not None
    new_secret = rotated["notificationSecret"]
    assert new_secret.startswith("whsec_") and new_secret != issued.notification_secret

    # The merchant has not switched yet: the old secret's signature is still there.
    txn_id = paid_deposit(api, stack, merchant)
    (seen,) = notifications_for(stack, txn_id)
    assert seen["verified"] and seen["answered"] == 204
    # It switches: the new secret's signature verifies too.
    merchant_holds(stack, new_secret)
    txn_id = paid_deposit(api, stack, merchant)
    (seen,) = notifications_for(stack, txn_id)
    assert seen["verified"] and seen["answered"] == 204

    # A rotation without overlap (a leaked secret): at once only the newest one signs.
    newest = rotate("--overlap", "0")
    assert newest["previousSecretSignsUntil"] is None
    txn_id = paid_deposit_unverified(api, stack, merchant)
    assert all(not n["verified"] and n["answered"] == 401 for n in notifications_for(stack, txn_id))
    merchant_holds(stack, newest["notificationSecret"])
    # The notification is retried with its backoff, and now verifies.
    wait_until(
        lambda: any(n["verified"] for n in notifications_for(stack, txn_id)),
        timeout=30,
        what="the retried notification verified with the newest secret",
    )


def paid_deposit_unverified(api, stack, merchant) -> str:
    """A paid deposit whose notification the merchant refused (its secret is stale)."""
    txn_id = deposit(api, merchant.headers, merchant.flow_target, merchant.psp)
    pay(stack, txn_id)
    wait_until(
        lambda: transaction(api, merchant.headers, txn_id)["status"] == "SUCCESS", what="SUCCESS"
    )
    wait_until(lambda: notifications_for(stack, txn_id), what="a delivery attempt")
    return txn_id


def test_rotating_an_unknown_environment_is_refused(db):
    done = cli("tenants", "rotate-secret", "--brand", "nobody", "--environment", "live")
    assert done.returncode != 0 and "no such brand/environment" in done.stderr
    negative = cli(
        "tenants", "rotate-secret", "--brand", "x", "--environment", "y", "--overlap", "-1"
    )
    assert negative.returncode != 0 and "--overlap" in negative.stderr
