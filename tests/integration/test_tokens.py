"""API tokens: revocation and rotation from the CLI, and what bad tokens cost the ingress."""

from __future__ import annotations

import json
import secrets
import time
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from api_gateway import auth
from connxt.settings import get_settings
from storage.db import get_engine
from tests.support.flows import V2
from tests.support.merchant import cli
from tests.support.stack import wait_until

pytestmark = pytest.mark.integration

DEFINITIONS = f"{V2}/flow-types/definitions"


def step1(client, token: str):
    return client.get(DEFINITIONS, params={"type": "PSP"}, headers={"X-SECRET-TOKEN": token})


def seconds_until_refused(client, token: str, timeout: float) -> float:
    """Poll with ``token`` until the ingress answers 401; how long that took."""
    started = time.monotonic()
    wait_until(lambda: step1(client, token).status_code == 401, timeout=timeout, what="401")
    return time.monotonic() - started


def test_revoked_token_is_refused_by_the_running_api_within_the_cache_lifetime(api, make_tenant):
    issued, _ = make_tenant("revokee", "live")
    assert step1(api, issued.token).status_code == 200  # now remembered by the API process

    revoked = cli("tenants", "revoke", "--token", issued.token)
    assert revoked.returncode == 0, revoked.stderr
    took = seconds_until_refused(api, issued.token, timeout=auth.TOKEN_CACHE_SECONDS + 5)
    assert took <= auth.TOKEN_CACHE_SECONDS + 1.5
    time.sleep(0.5)
    assert step1(api, issued.token).status_code == 401  # and it stays refused

    again = cli("tenants", "revoke", "--token", issued.token)
    assert again.returncode != 0 and "no working token" in again.stderr
    unknown = cli("tenants", "revoke", "--token", "sec_" + secrets.token_hex(16))
    assert unknown.returncode != 0


def test_rotation_issues_a_token_and_the_old_one_stops_after_the_grace(api, make_tenant):
    issued, _ = make_tenant("rotator", "live")
    assert step1(api, issued.token).status_code == 200

    rotated = cli(
        "tenants", "rotate", "--brand", "rotator", "--environment", "live", "--grace", "4", "--json"
    )
    assert rotated.returncode == 0, rotated.stderr
    out = json.loads(rotated.stdout)
    assert out["brandId"] == issued.brand_id and out["environmentId"] == issued.environment_id
    assert out["previousTokens"] == 1 and out["previousTokensStopAt"].endswith("+00:00")
    new = out["token"]
    assert new != issued.token and new.startswith("sec_")
    assert step1(api, new).status_code == 200
    assert step1(api, issued.token).status_code == 200  # still inside its grace period
    # It stops once the grace period is over, and the API's memory of it at the latest
    # a cache lifetime later.
    took = seconds_until_refused(api, issued.token, timeout=4 + auth.TOKEN_CACHE_SECONDS + 5)
    assert took <= 4 + auth.TOKEN_CACHE_SECONDS + 1.5
    assert step1(api, new).status_code == 200

    # Without --grace the previous token stops at once (within the cache's lifetime).
    again = cli("tenants", "rotate", "--brand", "rotator", "--environment", "live", "--json")
    newest = json.loads(again.stdout)["token"]
    assert step1(api, newest).status_code == 200
    took = seconds_until_refused(api, new, timeout=auth.TOKEN_CACHE_SECONDS + 5)
    assert took <= auth.TOKEN_CACHE_SECONDS + 1.5
    assert step1(api, newest).status_code == 200

    missing = cli("tenants", "rotate", "--brand", "nobody", "--environment", "live")
    assert missing.returncode != 0


@contextmanager
def token_lookups():
    """Count the statements this process sends that read the API tokens."""
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        if "api_tokens" in statement:
            seen.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


@pytest.fixture
def fresh_auth():
    auth.forget_cached_tokens()
    yield
    auth.forget_cached_tokens()


def test_a_repeated_unknown_token_costs_one_lookup(client, fresh_auth):
    bad = "sec_" + secrets.token_hex(16)
    with token_lookups() as lookups:
        for _ in range(30):
            assert step1(client, bad).status_code == 401
            # The hot path (Step 3) shares the remembered answer.
            answer = client.post(f"{V2}/transactions", headers={"X-SECRET-TOKEN": bad}, json={})
            assert answer.status_code == 401
    assert len(lookups) == 1


def test_a_flood_of_new_unknown_tokens_is_cut_off_per_address(client, tenant, fresh_auth):
    issued, headers = tenant
    assert step1(client, issued.token).status_code == 200  # known before the flood
    limit = get_settings().auth_failure_limit
    with token_lookups() as lookups:
        codes = [step1(client, "sec_" + secrets.token_hex(16)).status_code for _ in range(limit)]
        assert codes == [401] * limit
        for _ in range(20):
            refused = client.post(
                f"{V2}/transactions",
                headers={"X-SECRET-TOKEN": "sec_" + secrets.token_hex(16)},
                json={},
            )
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["code"] == "429" and refused.json()["errors"] == []
            assert step1(client, "sec_" + secrets.token_hex(16)).status_code == 429
    # Only the first ``limit`` unknown tokens were looked up; the rest cost nothing.
    assert len(lookups) == limit
    # A token this process knows keeps working from the same address.
    assert step1(client, issued.token).status_code == 200
