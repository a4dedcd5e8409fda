"""The operator console as tests use it: a signed-in HTTP client, and headless Chromium.

Chromium and ChromeDriver are Debian's (/usr/bin/chromium, /usr/bin/chromedriver),
installed by deploy/browsers.sh when missing; Selenium drives them and never downloads a
browser or a driver of its own.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from api_gateway.transactions.examples import reference_payload
from tests.support.merchant import deposit, notifications_for, pay, transaction
from tests.support.stack import wait_until

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CONNXT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CONNXT_CHROMEDRIVER", "/usr/bin/chromedriver")
# The console's one operator in tests (defined here, in a module imported once under one
# name: a conftest imported a second time by a test module would make another token).
OPERATOR = "ops-alice"
OPERATOR_TOKEN = "opr_" + secrets.token_urlsafe(24)
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True)
class Merchant:
    """A tenant with a Paymaxis account, as the console tests use one."""

    issued: Any  # storage.tenants.IssuedTenant: its token signs in
    headers: dict[str, str]
    flow_target: dict[str, Any]
    psp: dict[str, Any]
    credential: dict[str, str]


def paid_deposit(api: httpx.Client, stack: Any, merchant: Merchant, order_id: str = "") -> str:
    """A deposit made through the API, paid at the PSP, SUCCESS, its merchant notified."""
    order_id = order_id or f"order-{secrets.token_hex(4)}"
    txn_id = deposit(
        api,
        merchant.headers,
        merchant.flow_target,
        merchant.psp,
        payload=reference_payload(order_id),
    )
    pay(stack, txn_id)
    wait_until(
        lambda: transaction(api, merchant.headers, txn_id)["status"] == "SUCCESS", what="SUCCESS"
    )
    wait_until(lambda: notifications_for(stack, txn_id), what="merchant notified")
    return txn_id


def notification_ids(page: str) -> list[str]:
    """The merchant notifications a transaction page shows."""
    return re.findall(r'id="notification-(ntf_[A-Za-z0-9]+)"', page)


def csrf_of(page: str) -> str:
    found = _CSRF.search(page)
    assert found, "the page carries no CSRF token"
    return found.group(1)


def console_client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30, follow_redirects=False)


def sign_in(client: httpx.Client, token: str, name: str = "Test Operator") -> httpx.Response:
    """Sign in through the form, as a browser would; the answer to the POST."""
    form = client.get("/login")
    assert form.status_code == 200, form.text
    return client.post(
        "/login", data={"token": token, "name": name, "csrf": csrf_of(form.text), "next": "/"}
    )


def signed_in(url: str, token: str, name: str = "Test Operator") -> httpx.Client:
    client = console_client(url)
    answer = sign_in(client, token, name)
    assert answer.status_code == 303, answer.text
    return client


def act(
    client: httpx.Client, txn_id: str, action: str, target: str = "", **fields: str
) -> httpx.Response:
    """An action through its confirmation page, with the CSRF token that page carries."""
    query = {"target": target} if target else {}
    page = client.get(f"/transactions/{txn_id}/confirm/{action}", params=query)
    assert page.status_code == 200, page.text
    data = {"csrf": csrf_of(page.text), "confirmed": "yes", "target": target, **fields}
    return client.post(f"/transactions/{txn_id}/actions/{action}", data=data)


def ensure_browser() -> None:
    """Install Chromium and ChromeDriver (deploy/browsers.sh) when they are missing."""
    if os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK):
        return
    subprocess.run(["bash", str(ROOT / "deploy" / "browsers.sh")], check=True, timeout=1200)


def chromium():
    """A headless Chromium under Selenium, with a profile of its own."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    ensure_browser()
    profile = tempfile.mkdtemp(prefix="connxt-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # we run as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1440,1500",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
