"""The console beside the shared stack, with one operator, and a merchant to look at."""

from __future__ import annotations

import pytest

from tests.support.console import OPERATOR, OPERATOR_TOKEN, Merchant
from tests.support.flows import paymaxis_psp
from tests.support.merchant import notified_tenant


@pytest.fixture(scope="session")
def console_url(stack):
    """`connxt console` as a process of its own, with one operator configured."""
    url = stack.start_console({"CONNXT_OPERATOR_TOKENS": f"{OPERATOR}:{OPERATOR_TOKEN}"})
    yield url
    stack.kill("console")


@pytest.fixture
def merchant(api, stack, make_tenant) -> Merchant:
    """A tenant whose notifications the sandbox's merchant receiver verifies, with a
    Paymaxis account."""
    issued, headers = notified_tenant(stack, make_tenant)
    flow_target, psp, credential = paymaxis_psp(api, stack.sandbox_url, headers)
    return Merchant(issued, headers, flow_target, psp, credential)
