"""The hot routes answer as the framework does.

Step 3 and the webhook door are taken before FastAPI's router (api_gateway/hot_paths.py).
The same app built with that dispatch turned off sends the same requests through FastAPI's
routing and request handler; on a corpus of bad requests the two must agree on the status,
the envelope and its wording. A middleware added the usual way serves the hot routes too,
and a body that is not JSON is answered in one wording wherever it arrives.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient

from api_gateway.app import create_app
from api_gateway.errors import NOT_JSON
from api_gateway.hot_paths import HotRoutes
from api_gateway.psps import cache
from connxt.settings import get_settings
from tests.support.asgi import Answer, send_raw
from tests.support.flows import V2, action_id, create_psp, target

pytestmark = pytest.mark.integration

STEP3 = f"{V2}/transactions"
ONE_WORDING = {"field": "body", "message": NOT_JSON}


@pytest.fixture
def twins(db):
    """The app as served, and the same app with its hot dispatch turned off."""
    with (
        TestClient(create_app(), raise_server_exceptions=False) as hot,
        TestClient(create_app(hot_routes=False), raise_server_exceptions=False) as framework,
    ):
        yield hot, framework


@pytest.fixture
def world(twins, tenant):
    """A tenant, its signed Paymaxis account and a valid Step 3 body for it."""
    hot, _ = twins
    _, headers = tenant
    key = secrets.token_hex(16)
    flow_target = target(hot, headers, "Paymaxis")
    psp = create_psp(hot, headers, flow_target, {"apiKey": "pmx_hot", "webhookSigningKey": key})
    step3 = {
        "flowActionId": action_id(flow_target, "DEPOSIT"),
        "flowTargetId": flow_target["id"],
        "pspId": psp["id"],
        "txnAmount": 10,
        "txnCurrency": "USD",
        "executePayload": {},
    }
    cache.forget_cached_psps()
    yield World(headers, psp["id"], key, step3)
    cache.forget_cached_psps()


@dataclass
class World:
    headers: dict[str, str]
    psp_id: str
    key: str
    step3: dict = field(default_factory=dict)

    def signed(self, body: bytes) -> dict[str, str]:
        signature = hmac.new(self.key.encode(), body, hashlib.sha256).hexdigest()
        return {"Signature": signature, "Content-Type": "application/json"}


@dataclass
class Case:
    path: str
    headers: dict[str, str]
    pieces: list[bytes]
    disconnect: bool = False
    declared_length: bool = True


def _step3(world: World, body: bytes, **options) -> Case:
    headers = {**world.headers, "Content-Type": "application/json"}
    return Case(STEP3, headers, [body], **options)


def _with(world: World, **changes) -> bytes:
    return json.dumps({**world.step3, **changes}).encode()


def _webhook(world: World, body: bytes, psp_id: str | None = None, **options) -> Case:
    path = f"{V2}/external/webhooks/{psp_id or world.psp_id}"
    return Case(path, world.signed(body), [body], **options)


OVERSIZED = get_settings().max_body_bytes + 1

CORPUS = {
    "step3-invalid-json": lambda w: _step3(w, b'{"pspId": '),
    "step3-not-utf8": lambda w: _step3(w, b'{"pspId": "\xff\xfe"}'),
    "step3-not-an-object": lambda w: _step3(w, b"[1, 2]"),
    "step3-wrong-types": lambda w: _step3(w, _with(w, txnAmount="ten", flowActionId=5)),
    "step3-huge-number": lambda w: _step3(
        w, _with(w).replace(b'"txnAmount": 10', b'"txnAmount": 1e999999999')
    ),
    "step3-huge-integer": lambda w: _step3(
        w, _with(w, executePayload={"n": "N"}).replace(b'"N"', b"9" * 5000)
    ),
    "step3-deep-nesting": lambda w: _step3(w, b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    "step3-missing-fields": lambda w: _step3(w, b"{}"),
    "step3-unknown-psp": lambda w: _step3(w, _with(w, pspId="psp_unknown")),
    "step3-no-token": lambda w: Case(STEP3, {"Content-Type": "application/json"}, [b"{}"]),
    "step3-oversized-declared": lambda w: _step3(w, b"x" * OVERSIZED),
    "step3-oversized-streamed": lambda w: Case(
        STEP3, {**w.headers}, [b"x" * 65536] * (OVERSIZED // 65536 + 1), declared_length=False
    ),
    "step3-disconnect": lambda w: _step3(w, b'{"pspId": "ps', disconnect=True),
    "webhook-unknown-psp": lambda w: _webhook(w, b"{}", psp_id="psp_unknown"),
    "webhook-invalid-json": lambda w: _webhook(w, b'{"id": "pay_1", '),
    "webhook-wrong-types": lambda w: _webhook(w, b'{"id": 5, "referenceId": [], "state": {}}'),
    "webhook-missing-fields": lambda w: _webhook(w, b"{}"),
    "webhook-bad-signature": lambda w: Case(
        f"{V2}/external/webhooks/{w.psp_id}",
        {"Signature": "0" * 64, "Content-Type": "application/json"},
        [b'{"id": "pay_1", "referenceId": "txn_1", "state": "COMPLETED"}'],
    ),
    "webhook-oversized-declared": lambda w: _webhook(w, b"x" * OVERSIZED),
    "webhook-oversized-streamed": lambda w: Case(
        f"{V2}/external/webhooks/{w.psp_id}",
        {"Content-Type": "application/json"},
        [b"x" * 65536] * (OVERSIZED // 65536 + 1),
        declared_length=False,
    ),
    "webhook-disconnect": lambda w: _webhook(w, b'{"id": "pa', disconnect=True),
}


def send(client: TestClient, case: Case) -> Answer:
    return send_raw(
        client,
        case.path,
        case.headers,
        case.pieces,
        disconnect=case.disconnect,
        declared_length=case.declared_length,
    )


@pytest.mark.parametrize("name", list(CORPUS))
def test_a_bad_request_gets_the_frameworks_answer_from_the_hot_route(twins, world, name):
    hot, framework = twins
    case = CORPUS[name](world)
    ours, theirs = send(hot, case), send(framework, case)
    assert ours.escaped is None and theirs.escaped is None, (ours.escaped, theirs.escaped)
    assert ours.status == theirs.status, (ours.body, theirs.body)
    assert ours.headers.get("content-type") == theirs.headers.get("content-type")
    assert ours.envelope() == theirs.envelope()
    # And the answer is a refusal in the envelope, never a server error.
    assert 400 <= ours.status < 500, ours.body
    assert set(ours.json()) == {"timestamp", "code", "message", "errors"}
    assert ours.json()["code"] == str(ours.status)


def test_the_twins_differ_only_in_the_dispatch(twins):
    """The framework twin really goes through FastAPI's router for these routes."""
    hot, framework = twins
    for app, expected in ((hot.app, True), (framework.app, False)):
        assert isinstance(app.router.middleware_stack, HotRoutes) is expected
    assert {hot.route.path for hot in hot.app.router.middleware_stack.hot} == {
        STEP3,
        f"{V2}/external/webhooks/{{psp_id}}",
    }


def test_a_middleware_added_the_usual_way_serves_the_hot_routes(db):
    seen: list[str] = []

    class Recorder:
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] == "http":
                seen.append(scope["path"])
            await self.app(scope, receive, send)

    app = create_app()
    app.add_middleware(Recorder)
    with TestClient(app) as client:
        assert client.post(STEP3, json={}).status_code == 401
        assert client.post(f"{V2}/external/webhooks/psp_none", json={}).status_code == 404
    assert seen == [STEP3, f"{V2}/external/webhooks/psp_none"]


def test_a_body_that_is_not_json_has_one_wording_everywhere(twins, world):
    hot, _ = twins
    not_json = b'{"name": '
    json_headers = {**world.headers, "Content-Type": "application/json"}
    answers = {
        "step3": hot.post(STEP3, content=not_json, headers=json_headers),
        "step3-not-utf8": hot.post(STEP3, content=b"\xff\xfe", headers=json_headers),
        # Bodies FastAPI reads and parses itself.
        "psp-create": hot.post(f"{V2}/psps/external", content=not_json, headers=json_headers),
        "psp-create-not-utf8": hot.post(
            f"{V2}/psps/external", content=b'{"name": "\xff"}', headers=json_headers
        ),
        "psp-patch": hot.patch(f"{V2}/psps/{world.psp_id}", content=not_json, headers=json_headers),
        "webhook": hot.post(
            f"{V2}/external/webhooks/{world.psp_id}",
            content=not_json,
            headers=world.signed(not_json),
        ),
    }
    for where, answer in answers.items():
        assert answer.status_code == 400, (where, answer.text)
        assert answer.json()["message"] == "Validation failed", (where, answer.text)
        assert answer.json()["errors"] == [ONE_WORDING], (where, answer.text)


def test_an_oversized_body_has_one_wording_declared_or_streamed(twins, world):
    hot, framework = twins
    answers = [
        send(client, CORPUS[name](world))
        for client in (hot, framework)
        for name in ("step3-oversized-declared", "step3-oversized-streamed")
    ]
    answers.append(send(framework, CORPUS["webhook-oversized-streamed"](world)))
    assert {a.status for a in answers} == {413}
    assert {json.dumps(a.envelope()) for a in answers} == {
        json.dumps({"code": "413", "message": "Request body too large", "errors": []})
    }
