"""API tokens: revocation and rotation from the CLI, and what bad tokens cost the ingress."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from api_gateway import auth
from connxt.secrets import hash_token
from connxt.settings import get_settings
from tests.support.cli import cli
from tests.support.flows import V2
from tests.support.stack import wait_until
from tests.support.statements import statements_sent

# What this file checks (tokens) does not depend on the broker.
pytestmark = [pytest.mark.integration, pytest.mark.any_broker]

DEFINITIONS = f"{V2}/flow-types/definitions"


def step1(client, token: str):
    return client.get(DEFINITIONS, params={"type": "PSP"}, headers={"X-SECRET-TOKEN": token})


def seconds_until_refused(client, token: str, timeout: float) -> float:
    """Poll with ``token`` until the ingress answers 401; how long that took."""
    started = time.monotonic()
    wait_until(lambda: step1(client, token).status_code == 401, timeout=timeout, what="401")
    return time.monotonic() - started


def revoke_from_stdin(token: str, *options: str) -> subprocess.CompletedProcess:
    """`connxt tenants revoke` with the token on standard input. While the command runs,
    every process's argv on the machine is read: the token is in none of them."""
    process = subprocess.Popen(
        [sys.executable, "-m", "commands.cli", "tenants", "revoke", *options],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert token not in " ".join(process.args)
    process.stdin.write(token + "\n")
    process.stdin.flush()
    while process.poll() is None:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                argv = cmdline.read_bytes()
            except OSError:
                continue  # gone meanwhile
            assert token.encode() not in argv, f"the token is in {cmdline}"
        time.sleep(0.05)
    stdout, stderr = process.communicate(timeout=30)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_revoked_token_is_refused_by_the_running_api_within_the_cache_lifetime(api, make_tenant):
    issued, _ = make_tenant("revokee", "live")
    assert step1(api, issued.token).status_code == 200  # now remembered by the API process

    revoked = revoke_from_stdin(issued.token)
    assert revoked.returncode == 0, revoked.stderr
    assert "warning" not in revoked.stderr
    took = seconds_until_refused(api, issued.token, timeout=auth.TOKEN_CACHE_SECONDS + 5)
    assert took <= auth.TOKEN_CACHE_SECONDS + 1.5
    time.sleep(0.5)
    assert step1(api, issued.token).status_code == 401  # and it stays refused

    again = revoke_from_stdin(issued.token, "--token", "-")
    assert again.returncode != 0 and "no working token" in again.stderr
    unknown = revoke_from_stdin("sec_" + secrets.token_hex(16))
    assert unknown.returncode != 0


def test_a_token_is_listed_and_revoked_by_its_id(db, make_tenant):
    first, _ = make_tenant("listed", "live")
    second, _ = make_tenant("listed", "live")
    listed = cli("tenants", "tokens", "--brand", "listed", "--environment", "live", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["id"], r["state"], r["revokedAt"]) for r in rows] == [
        (first.token_id, "working", None),
        (second.token_id, "working", None),
    ]
    assert all(r["createdAt"].endswith("+00:00") for r in rows)
    # Never the token, nor its digest.
    for token in (first.token, second.token):
        assert token not in listed.stdout and hash_token(token) not in listed.stdout

    revoked = cli("tenants", "revoke", "--token-id", str(first.token_id))
    assert revoked.returncode == 0, revoked.stderr
    assert f"token #{first.token_id} revoked" in revoked.stdout
    rows = json.loads(
        cli("tenants", "tokens", "--brand", "listed", "--environment", "live", "--json").stdout
    )
    assert [r["state"] for r in rows] == ["revoked", "working"]
    assert rows[0]["revokedAt"] is not None
    again = cli("tenants", "revoke", "--token-id", str(first.token_id))
    assert again.returncode != 0 and "no working token" in again.stderr
    human = cli("tenants", "tokens", "--brand", "listed", "--environment", "live")
    assert f"#{second.token_id}" in human.stdout and "working" in human.stdout


def test_a_token_on_the_command_line_still_works_with_a_warning(db, make_tenant):
    issued, _ = make_tenant("hurried", "live")
    revoked = cli("tenants", "revoke", "--token", issued.token)
    assert revoked.returncode == 0, revoked.stderr
    assert "warning: a token on the command line" in revoked.stderr
    both = cli("tenants", "revoke", "--token", "-", "--token-id", "1")
    assert both.returncode == 2  # one way of naming it at a time


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
    """The statements this process sends that read the API tokens: ``lookups`` for one token
    by its digest, ``reads`` of the issued tokens' digests."""
    seen: dict[str, list[str]] = {"lookups": [], "reads": []}

    def count(statement: str) -> None:
        if "api_tokens" in statement:
            seen["lookups" if "token_sha256 =" in statement else "reads"].append(statement)

    with statements_sent(count):
        yield seen


@pytest.fixture
def fresh_auth(redis_client):
    auth.forget_cached_tokens()
    for key in redis_client.scan_iter(f"{get_settings().broker_key_prefix}authfail:*"):
        redis_client.delete(key)
    yield
    auth.forget_cached_tokens()


def guess() -> str:
    return "sec_" + secrets.token_hex(24)


def test_tokens_never_issued_cost_no_lookup(client, fresh_auth):
    """A guess is refused from the process's memory of issued tokens: no lookup by digest,
    and the issued tokens read at most once per ISSUED_READ_INTERVAL_SECONDS however many
    guesses come."""
    with token_lookups() as statements:
        started = time.monotonic()
        for _ in range(15):
            assert step1(client, guess()).status_code in (401, 429)
            # The hot path (Step 3) refuses the same way.
            answer = client.post(f"{V2}/transactions", headers={"X-SECRET-TOKEN": guess()}, json={})
            assert answer.status_code in (401, 429)
        took = time.monotonic() - started
    assert statements["lookups"] == []
    assert 1 <= len(statements["reads"]) <= 1 + took / auth.ISSUED_READ_INTERVAL_SECONDS


def test_a_revoked_token_repeated_costs_one_lookup(client, make_tenant, fresh_auth):
    issued, _ = make_tenant("repeat", "live")
    assert cli("tenants", "revoke", "--token", issued.token).returncode == 0
    with token_lookups() as statements:
        for _ in range(10):
            assert step1(client, issued.token).status_code == 401
    assert len(statements["lookups"]) == 1


def test_a_flood_of_guesses_is_answered_429_but_never_a_valid_token(
    client, make_tenant, fresh_auth
):
    """Past the limit the address's failures are answered 429; a valid token from the same
    address (a merchant behind the guesser's NAT or proxy), even one this process has never
    seen, is still served: the limit is on failures, never on credentials."""
    limit = get_settings().auth_failure_limit
    codes = [step1(client, guess()).status_code for _ in range(limit)]
    assert codes == [401] * limit
    for _ in range(5):
        refused = client.post(f"{V2}/transactions", headers={"X-SECRET-TOKEN": guess()}, json={})
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["code"] == "429" and refused.json()["errors"] == []
        assert step1(client, guess()).status_code == 429
    issued, _ = make_tenant("behind-the-same-nat", "live")  # never presented before
    assert step1(client, issued.token).status_code == 200


def test_the_failure_limit_is_counted_across_the_fleet(redis_client, fresh_auth):
    """Two ingress processes share one count (Redis); while Redis is away each counts alone."""
    from connxt.rate_limit import FleetFailureLimiter
    from connxt.redis import get_redis

    prefix = get_settings().broker_key_prefix
    first, second = (FleetFailureLimiter(get_redis(), prefix, 4, 10) for _ in range(2))
    assert [first.fail("10.1.1.1"), second.fail("10.1.1.1")] == [0, 0]
    assert [first.fail("10.1.1.1"), second.fail("10.1.1.1")] == [0, 0]
    assert 0 < second.fail("10.1.1.1") <= 10  # the fifth, wherever it lands
    assert first.fail("10.1.1.2") == 0  # per address

    import redis

    away = FleetFailureLimiter(
        redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2), prefix, 2, 10
    )
    started = time.monotonic()
    assert [away.fail("10.1.1.3") for _ in range(3)][-1] > 0
    assert time.monotonic() - started < 5  # one failed call, then the process's own count
