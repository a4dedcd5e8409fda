"""Bad input at scale: schemathesis against the service's own OpenAPI document.

Every operation of ``/openapi.json`` gets a bounded number of generated requests (valid and
invalid ones: schemathesis's positive and negative modes, its examples and coverage phases),
sent in-process to the ASGI app on this run's private database. Most carry a valid tenant
token; some carry none or a bogus one and must be refused with a 401. Every answer must be
below 500 and in the reference's envelope.

Not fuzzed: ``/metrics`` (Prometheus text, not the envelope) and the result page are not in
the document. The customer redirects answer 303 by design: for them only "no 5xx" is checked.
"""

from __future__ import annotations

import os
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from api_gateway.app import create_app

V2 = "/connxt/v2"
# Answer 303 (or the result page's HTML) by design: only "no 5xx" is checked for them.
REDIRECTS = {f"{V2}/external/redirects/{{txn_id}}"}
# PSP-facing and operational endpoints take no token.
PUBLIC_PREFIXES = (f"{V2}/external/", "/healthz", "/readyz")
STAMP_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
TOKEN_HEADER = "X-SECRET-TOKEN"
# Hypothesis shrinks towards the first element: failures are reported authenticated.
AUTH_MODES = st.sampled_from(["valid", "valid", "valid", "missing", "bogus"])


@pytest.fixture(autouse=True)
def answer_at_once(db):
    """POST /transactions answers at once (202 with the stored status): no worker runs here.

    Settings are cached (``get_settings`` is an lru_cache) and read per request: the cache
    is cleared after the variable is set and again after it is restored, so no other test
    sees the 0.
    """
    from connxt.settings import get_settings

    previous = os.environ.get("CONNXT_INITIATION_WAIT_SECONDS")
    os.environ["CONNXT_INITIATION_WAIT_SECONDS"] = "0"
    get_settings.cache_clear()
    try:
        assert get_settings().initiation_wait_seconds == 0
        yield
    finally:
        if previous is None:
            os.environ.pop("CONNXT_INITIATION_WAIT_SECONDS", None)
        else:
            os.environ["CONNXT_INITIATION_WAIT_SECONDS"] = previous
        get_settings.cache_clear()


# The document is loaded at collection so that each operation is its own test item.
# (schemathesis.pytest.from_fixture would defer this, but its subtest runner does not work
# with pytest 9.2: it writes ``request.node._nodeid``, which pytest no longer has.)
# Building the app opens no connection: the database is only reached by the requests.
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app()).exclude(path="/metrics")


def needs_token(path: str) -> bool:
    return not path.startswith(PUBLIC_PREFIXES)


def authenticate(case, mode: str, token: str) -> None:
    """Replace whatever token was generated with a valid one, none, or a bogus one."""
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != TOKEN_HEADER.lower()}
    if mode == "valid":
        headers[TOKEN_HEADER] = token
    elif mode == "bogus":
        headers[TOKEN_HEADER] = "sec_" + "0" * 32
    case.headers = headers


def assert_envelope(response, path: str) -> dict:
    status = response.status_code
    where = f"{response.request.method} {path} -> {status}: {response.text[:500]}"
    # schemathesis's Response keeps every header as a list of values.
    content_type = {k.lower(): v for k, v in response.headers.items()}.get("content-type", [""])
    assert content_type[0].startswith("application/json"), where
    body = response.json()
    assert isinstance(body, dict), where
    assert STAMP_Z.match(str(body.get("timestamp"))), where
    assert body.get("code") == str(status), where
    assert isinstance(body.get("message"), str) and body["message"], where
    if status < 400:
        assert "data" in body and "errors" not in body, where
    else:
        assert "data" not in body, where
        assert isinstance(body.get("errors"), list), where
        for item in body["errors"]:
            assert isinstance(item, dict), where
            assert isinstance(item.get("field"), str) and item["field"], where
            assert isinstance(item.get("message"), str) and item["message"], where
    return body


@pytest.fixture
def token(make_tenant):
    return make_tenant("fuzz", "ci")[0].token


@schema.parametrize()
@schema.given(auth=AUTH_MODES)
@settings(
    max_examples=int(os.environ.get("CONNXT_FUZZ_EXAMPLES", "25")),
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_in_the_envelope(case, auth, token):
    path = case.operation.path
    if needs_token(path):
        authenticate(case, auth, token)
    response = case.call(allow_redirects=False)
    if os.environ.get("FUZZ_STATS"):
        with open(os.environ["FUZZ_STATS"], "a") as fh:
            fh.write(f"{case.operation.method.upper()} {path} {auth} {response.status_code} {response.text[:150]!r}\n")
    case.validate_response(response, checks=[not_a_server_error])
    assert response.status_code < 500, response.text[:500]
    if path in REDIRECTS:
        return
    body = assert_envelope(response, path)
    if needs_token(path) and auth != "valid" and response.status_code != 401:
        # Only a body that cannot be read at all is refused before the token is looked at.
        assert response.status_code in (400, 413), response.text[:500]
        assert response.status_code == 413 or body["errors"] == [
            {"field": "body", "message": "Request body is not valid JSON"}
        ], response.text[:500]
