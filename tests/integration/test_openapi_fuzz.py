"""Bad input at scale: schemathesis against the service's own OpenAPI document.

Every operation of ``/openapi.json`` gets a bounded number of generated requests (valid and
invalid ones: schemathesis's positive and negative modes), sent in-process to the ASGI app
on this run's private database. Most carry a valid tenant token; some carry none or a bogus
one and must be refused with a 401. Some have their identifiers swapped for real ones (a
PSP, its target and actions, a transaction), so that they reach the code behind "not
found". A second test sends the document's own examples and schemathesis's coverage cases
(its boundary values of every parameter), with a valid token.

Every answer must be below 500, in the reference's envelope, with a status code the
document lists for the operation and a body that matches the schema it gives for that code
(schemathesis's ``status_code_conformance`` and ``response_schema_conformance``).

Not fuzzed: ``/metrics`` (Prometheus text, not the envelope); the result page is not in the
document. The customer redirects answer 303 by design: for them only "no 5xx" is checked.

``max_examples`` is 25 per operation (about 30 s in all); set ``CONNXT_FUZZ_EXAMPLES`` for
a longer local run.
"""

from __future__ import annotations

import json
import os
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api_gateway.app import create_app
from tests.support.flows import V2, create_psp, reference_payload, target, transaction_body

# Answer 303 (or the result page's HTML) by design: only "no 5xx" is checked for them.
REDIRECTS = {f"{V2}/external/redirects/{{txn_id}}"}
# PSP-facing and operational endpoints take no token.
PUBLIC_PREFIXES = (f"{V2}/external/", "/healthz", "/readyz")
STAMP_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
TOKEN_HEADER = "X-SECRET-TOKEN"
# Hypothesis shrinks towards the first element: failures are reported authenticated.
AUTH_MODES = st.sampled_from(["valid", "valid", "valid", "missing", "bogus"])
# Whether identifiers in the path and body are swapped for real ones (a PSP of that
# connector, its target and actions, a transaction), so requests get past "not found".
REAL_IDS = st.sampled_from([None, "Paymaxis", "Sticpay"])
# Every answer: no 5xx, a status the document lists, a body matching its schema.
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture(autouse=True)
def answer_at_once(db):
    """POST /transactions answers at once (202 with the stored status), not after 10 s.

    No worker is started for this module (one may be running from another module's stack).

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
# The document is the app's own (what /openapi.json serves), read without starting the app:
# schemathesis's from_asgi fetches it through a client that runs the app's lifespan, whose
# pools then reach for this run's database before the session has created it. A copy, as
# the JSON served is: schemathesis works on the dict it is given, the app caches its own.
app = create_app()
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(app.openapi())))
schema.app, schema.location = app, "/openapi.json"
schema = schema.exclude(path="/metrics")


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
    content_type = {k.lower(): v for k, v in response.headers.items()}.get("content-type", "")
    if isinstance(content_type, list):  # schemathesis's Response: every header is a list
        content_type = content_type[0] if content_type else ""
    assert content_type.startswith("application/json"), where
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
def world(client, make_tenant):
    """A tenant with a PSP of each built-in connector and one transaction."""
    issued, headers = make_tenant("fuzz", "ci")
    psps = {}
    for name, credential in (
        # No webhookSigningKey: Paymaxis notifications are parsed unverified, not refused.
        ("Paymaxis", {"apiKey": "pmx_fuzz"}),
        ("Sticpay", {"merchantEmail": "fuzz@example.com", "apiKey": "stic_fuzz"}),
    ):
        flow_target = target(client, headers, name)
        psps[name] = {
            "psp": create_psp(client, headers, flow_target, credential, name=f"Fuzz {name}"),
            "target": flow_target,
        }
    paymaxis = psps["Paymaxis"]
    answer = client.post(
        f"{V2}/transactions",
        headers={**headers, "Prefer": "respond-async"},
        json=transaction_body(paymaxis["psp"], paymaxis["target"]),
    )
    assert answer.status_code in (200, 202), answer.text
    return {"token": issued.token, "psps": psps, "txn_id": answer.json()["data"]["txnId"]}


def use_real_ids(case, world: dict, connector: str) -> None:
    chosen = world["psps"][connector]
    flow_target, psp = chosen["target"], chosen["psp"]
    deposit = next(a for a in flow_target["actions"] if a["name"] == "DEPOSIT")
    params = dict(case.path_parameters or {})
    if "psp_id" in params:
        params["psp_id"] = psp["id"]
    if "txn_id" in params:
        params["txn_id"] = world["txn_id"]
    case.path_parameters = params
    body = case.body
    if not isinstance(body, dict):
        return
    if case.operation.path == f"{V2}/transactions":
        # A valid amount too (invalid ones are fuzzed without real ids): the payload, type,
        # parent and headers then reach the service and, often, a created transaction.
        body.update(
            pspId=psp["id"],
            flowTargetId=flow_target["id"],
            flowActionId=deposit["id"],
            txnCurrency="USD",
            txnAmount=200,
        )
    if case.operation.path == f"{V2}/psps/external":
        body["flowTargetId"] = flow_target["id"]
    if isinstance(body.get("operations"), list):
        for operation in body["operations"]:
            if isinstance(operation, dict):
                operation.update(
                    flowActionId=deposit["id"], flowDefinitionId=deposit["definition"]["id"]
                )


@schema.parametrize()
@schema.given(auth=AUTH_MODES, real=REAL_IDS)
@settings(
    max_examples=int(os.environ.get("CONNXT_FUZZ_EXAMPLES", "25")),
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    # Generated cases only: the document's examples run in the test below (schemathesis
    # does not mix them with strategies of the test's own).
    phases=[phase for phase in Phase if phase is not Phase.explicit],
)
def test_every_operation_answers_in_the_envelope(case, auth, real, world):
    path = case.operation.path
    if real is not None:
        use_real_ids(case, world, real)
    if needs_token(path):
        authenticate(case, auth, world["token"])
    response = case.call(allow_redirects=False)
    case.validate_response(response, checks=CHECKS)
    assert response.status_code < 500, response.text[:500]
    if path in REDIRECTS:
        return
    body = assert_envelope(response, path)
    if needs_token(path) and auth != "valid" and response.status_code != 401:
        # Only a body that cannot be read at all is refused before the token is looked at.
        assert response.status_code in (400, 413), response.text[:500]
        assert response.status_code == 413 or [e["field"] for e in body["errors"]] == ["body"], (
            response.text[:500]
        )


@schema.parametrize()
@settings(
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit],  # the document's examples and the coverage cases, nothing else
)
def test_the_documents_examples_and_boundaries_answer_as_documented(case, world):
    path = case.operation.path
    if needs_token(path):
        authenticate(case, "valid", world["token"])
    response = case.call(allow_redirects=False)
    case.validate_response(response, checks=CHECKS)
    if path not in REDIRECTS:
        assert_envelope(response, path)


# Inputs schemathesis does not produce from this document (the webhook body is not in it;
# nesting and lone surrogates are rare draws) that once answered 500. Each is a 400 now.
DEEP = '{"a":' * 5000 + "1" + "}" * 5000


def _txn_body(world: dict, connector: str = "Paymaxis") -> str:
    chosen = world["psps"][connector]
    return json.dumps(transaction_body(chosen["psp"], chosen["target"]))


@pytest.mark.parametrize(
    ("method", "where", "make_body", "field"),
    [
        ("POST", "transactions", lambda w: DEEP, "body"),
        ("POST", "psps", lambda w: DEEP, "body"),
        ("PATCH", "psp", lambda w: DEEP, "body"),
        ("POST", "webhook", lambda w: DEEP, None),
        (
            "POST",
            "transactions",
            lambda w: _txn_body(w).replace('"customAttributes": {}', f'"customAttributes": {DEEP}'),
            "body",
        ),
        (
            "POST",
            "transactions",
            lambda w: _txn_body(w).replace(
                '"customAttributes": {}', '"customAttributes": ' + "[" * 500 + "]" * 500
            ),
            "executePayload.body.customAttributes" + "[0]" * 62,
        ),
        (
            "POST",
            "transactions",
            lambda w: _txn_body(w).replace('"cust_001"', '"\\ud800"'),
            "executePayload.body.customer.id",
        ),
        ("POST", "webhook", lambda w: '{"id": "1", "state": "X", "referenceId": "\\udfff"}', None),
        ("POST", "psps", lambda w: b'{"name": "\xff"}', "body"),
        ("POST", "psps", lambda w: '{"name": ' + "9" * 5000 + "}", "body"),
    ],
    ids=[
        "deep-transaction",
        "deep-psp",
        "deep-psp-patch",
        "deep-webhook",
        "deep-payload-past-parser",
        "deep-payload-under-parser",
        "surrogate-in-payload",
        "surrogate-in-webhook",
        "not-utf8",
        "integer-over-digit-limit",
    ],
)
def test_pathological_bodies_answer_400_in_the_envelope(
    client, world, method, where, make_body, field
):
    paymaxis = world["psps"]["Paymaxis"]["psp"]["id"]
    path = {
        "transactions": f"{V2}/transactions",
        "psps": f"{V2}/psps/external",
        "psp": f"{V2}/psps/{paymaxis}",
        "webhook": f"{V2}/external/webhooks/{paymaxis}",
    }[where]
    body = make_body(world)
    response = client.request(
        method,
        path,
        content=body.encode() if isinstance(body, str) else body,
        headers={TOKEN_HEADER: world["token"], "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text[:500]
    answer = assert_envelope(response, path)
    if field is not None:
        assert field in [e["field"] for e in answer["errors"]], response.text[:500]


def test_unusable_return_url_redirects_to_our_result_page(client, world):
    paymaxis = world["psps"]["Paymaxis"]
    payload = reference_payload(returnUrl="http://[")  # urlsplit refuses it
    created = client.post(
        f"{V2}/transactions",
        headers={TOKEN_HEADER: world["token"], "Prefer": "respond-async"},
        json=transaction_body(paymaxis["psp"], paymaxis["target"], payload=payload),
    )
    assert created.status_code in (200, 202), created.text
    txn_id = created.json()["data"]["txnId"]
    for method in ("GET", "POST"):
        answer = client.request(method, f"{V2}/external/redirects/{txn_id}", follow_redirects=False)
        assert answer.status_code == 303, answer.text[:500]
        assert answer.headers["location"].endswith(f"/external/result/{txn_id}")
