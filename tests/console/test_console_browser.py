"""The console in a real browser (headless Chromium): a tenant's user signs in, finds a
deposit made through the API, opens it, reads its timeline, sends its notification again
and sees the new attempt.

With CONNXT_UPDATE_SCREENSHOTS=1 the transaction page's screenshot is written to
docs/console-transaction.png (the one the README shows); otherwise to the test's tmp dir.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.support.console import ROOT, chromium, paid_deposit

# The console's pages and actions: the broker under its worker changes none of it.
pytestmark = [pytest.mark.integration, pytest.mark.any_broker]


@pytest.fixture
def browser():
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


def attempts_shown(browser, notification_id: str) -> int:
    box = browser.find_element(By.ID, f"notification-{notification_id}")
    return len(box.find_elements(By.CSS_SELECTOR, "tr.attempt"))


def test_find_open_and_resend_a_deposits_notification(
    api, stack, console_url, merchant, browser, tmp_path
):
    order_id = "order-browser-1"
    txn_id = paid_deposit(api, stack, merchant, order_id=order_id)
    wait = WebDriverWait(browser, 30)

    # Sign in: any page leads to the form, and back after it.
    browser.get(f"{console_url}/transactions")
    wait.until(lambda b: b.find_elements(By.ID, "token"))
    browser.find_element(By.ID, "token").send_keys(merchant.issued.token)
    browser.find_element(By.ID, "name").send_keys("Grace (support)")
    browser.find_element(By.ID, "sign-in").click()
    wait.until(lambda b: b.find_elements(By.ID, "transactions"))
    assert "Grace (support) · shop / live" in browser.find_element(By.CSS_SELECTOR, ".who").text

    # Find it by its order id, among SUCCESS deposits.
    browser.find_element(By.ID, "search").send_keys(order_id)
    Select(browser.find_element(By.ID, "status")).select_by_value("SUCCESS")
    browser.find_element(By.ID, "apply").click()
    wait.until(lambda b: "q=order-browser-1" in b.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#transactions tbody tr")
    assert len(rows) == 1 and order_id in rows[0].text and "SUCCESS" in rows[0].text
    rows[0].find_element(By.LINK_TEXT, txn_id).click()

    # Its page: the status path and every step of the timeline.
    wait.until(lambda b: b.find_elements(By.ID, "timeline"))
    assert browser.find_element(By.ID, "txn-id").text == txn_id
    path = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#status-path li")]
    assert path == ["NEW", "CREATED", "INITIATED", "PG_ACCEPTED", "SUCCESS"] or path == [
        "CREATED",
        "INITIATED",
        "PG_ACCEPTED",
        "SUCCESS",
    ]
    timeline = browser.find_element(By.ID, "timeline").text
    assert "PG_ACCEPTED → SUCCESS" in timeline and "webhook" in timeline
    assert "verified" in browser.find_element(By.ID, "webhooks").text

    # Send the notification again: a confirmation page, then the new attempt.
    button = browser.find_element(By.CSS_SELECTOR, "a[id^='retry-ntf_']")
    notification_id = button.get_attribute("id").removeprefix("retry-")
    assert attempts_shown(browser, notification_id) == 1
    button.click()
    wait.until(lambda b: b.find_elements(By.ID, "confirm"))
    assert "Send the notification again?" in browser.find_element(By.TAG_NAME, "h1").text
    browser.find_element(By.ID, "confirm").click()
    wait.until(lambda b: b.find_elements(By.ID, "flash"))
    assert "is being sent again" in browser.find_element(By.ID, "flash").text

    def second_attempt(b) -> bool:
        b.refresh()
        return attempts_shown(b, notification_id) == 2

    WebDriverWait(browser, 30, poll_frequency=0.5).until(second_attempt)
    answers = browser.find_elements(By.CSS_SELECTOR, f"#notification-{notification_id} tr.attempt")
    assert all("200" in row.text or "204" in row.text for row in answers)
    timeline = browser.find_element(By.ID, "timeline").text
    assert f"notification {notification_id} sent again (by Grace (support)" in timeline

    # The PSP exchange opened, as an operator reading it would: its secrets are not there.
    browser.find_element(By.CSS_SELECTOR, "details.exchange summary").click()
    assert '"referenceId"' in browser.find_element(By.CSS_SELECTOR, "details.exchange").text
    for secret in merchant.credential.values():
        assert secret not in browser.page_source

    target = tmp_path / "console-transaction.png"
    if os.environ.get("CONNXT_UPDATE_SCREENSHOTS") == "1":
        target = ROOT / "docs" / "console-transaction.png"
        target.parent.mkdir(exist_ok=True)
    browser.set_window_size(1440, _page_height(browser))
    assert browser.save_screenshot(str(target))
    assert Path(target).stat().st_size > 10_000


def _page_height(browser) -> int:
    height = browser.execute_script("return document.documentElement.scrollHeight")
    # The window is a little taller than the page it shows (its own frame takes the rest).
    return max(900, min(int(height) + 160, 2600))
