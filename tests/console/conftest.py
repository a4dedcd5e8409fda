"""The console beside the shared stack, an operator token for it, and paid deposits."""

from __future__ import annotations

import secrets

import pytest

from connxt.examples import reference_payload
from tests.support.console import OPERATOR, OPERATOR_TOKEN
from tests.support.flows import paymaxis_psp
from tests.support.merchant import deposit, notifications_for, notified_tenant, pay, transaction
from tests.support.stack import wait_until


@pytest.fixture(scope="session")
def console_url(stack):
    """`connxt console` as a process of its own, with one operator configured."""
    url = stack.start_console({"CONNXT_OPERATOR_TOKENS": f"{OPERATOR}:{OPERATOR_TOKEN}"})
    yield url
    stack.kill("console")


@pytest.fixture
def merchant(api, stack, make_tenant):
    """A tenant whose notifications the sandbox's merchant receiver verifies, with a
    Paymaxis account: (issued tenant, headers, flow target, PSP)."""
    issued, headers = notified_tenant(stack, make_tenant)
    flow_target, psp, _ = paymaxis_psp(api, stack.sandbox_url, headers)
    return issued, headers, flow_target, psp


def paid_deposit(api, stack, merchant, order_id: str | None = None) -> str:
    """A deposit made through the API, paid at the PSP, SUCCESS, its merchant notified."""
    _, headers, flow_target, psp = merchant
    order_id = order_id or f"order-{secrets.token_hex(4)}"
    txn_id = deposit(api, headers, flow_target, psp, payload=reference_payload(order_id))
    pay(stack, txn_id)
    wait_until(lambda: transaction(api, headers, txn_id)["status"] == "SUCCESS", what="SUCCESS")
    wait_until(lambda: notifications_for(stack, txn_id), what="merchant notified")
    return txn_id
