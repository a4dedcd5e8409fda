"""`Idempotency-Key` on POST: replay, clash, and a request still in flight."""

from __future__ import annotations

import json

from sqlalchemy import func, select, update

from api_gateway import idempotency
from connxt.redis import get_redis
from storage.db import session_scope
from storage.idempotency import KeyUse
from storage.models import IdempotencyKey, Psp
from tests.support.flows import V2, target


def psp_body(flow_target: dict, name: str = "Keyed") -> dict:
    action = flow_target["actions"][0]
    return {
        "name": name,
        "credential": json.dumps({"apiKey": "k-123"}),
        "flowTargetId": flow_target["id"],
        "operations": [
            {
                "flowActionId": action["id"],
                "flowDefinitionId": action["definition"]["id"],
                "status": "ENABLED",
            }
        ],
    }


def psp_count() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Psp))


def test_same_key_and_body_replays_the_first_answer(client, tenant):
    _, headers = tenant
    keyed = {**headers, "Idempotency-Key": "psp-1"}
    body = psp_body(target(client, headers, "Paymaxis"))
    first = client.post(f"{V2}/psps/external", headers=keyed, json=body)
    again = client.post(f"{V2}/psps/external", headers=keyed, json=body)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert psp_count() == 1


def test_same_key_with_another_body_is_422(client, tenant):
    _, headers = tenant
    keyed = {**headers, "Idempotency-Key": "psp-2"}
    flow_target = target(client, headers, "Paymaxis")
    assert client.post(f"{V2}/psps/external", headers=keyed, json=psp_body(flow_target)).is_success
    other = client.post(f"{V2}/psps/external", headers=keyed, json=psp_body(flow_target, "Other"))
    assert other.status_code == 422
    assert other.json()["code"] == "422"
    assert psp_count() == 1


def test_a_refusal_is_replayed_too(client, tenant):
    _, headers = tenant
    keyed = {**headers, "Idempotency-Key": "psp-3"}
    body = {**psp_body(target(client, headers, "Paymaxis")), "credential": "not json"}
    first = client.post(f"{V2}/psps/external", headers=keyed, json=body)
    again = client.post(f"{V2}/psps/external", headers=keyed, json=body)
    assert first.status_code == again.status_code == 400
    assert first.json()["errors"] == again.json()["errors"]


def test_request_still_in_flight_is_409(client, tenant):
    issued, headers = tenant
    body = psp_body(target(client, headers, "Paymaxis"))
    raw = json.dumps(body).encode()
    # Mark the key in flight as a concurrent request would, without finishing it.
    digest = idempotency.request_hash("POST", f"{V2}/psps/external", raw)
    marker = idempotency._marker(KeyUse(issued.environment_id, "psp-4", digest))
    assert get_redis().set(marker, "1", nx=True, ex=idempotency.IN_FLIGHT_SECONDS)
    try:
        answer = client.post(
            f"{V2}/psps/external",
            headers={**headers, "Idempotency-Key": "psp-4", "Content-Type": "application/json"},
            content=raw,
        )
    finally:
        get_redis().delete(marker)
    assert answer.status_code == 409
    assert psp_count() == 0


def test_keys_are_per_environment(client, make_tenant):
    _, headers_a = make_tenant("a", "live")
    _, headers_b = make_tenant("b", "live")
    body = psp_body(target(client, headers_a, "Paymaxis"))
    for headers in (headers_a, headers_b):
        answer = client.post(
            f"{V2}/psps/external", headers={**headers, "Idempotency-Key": "same"}, json=body
        )
        assert answer.status_code == 200
    assert psp_count() == 2


def test_answer_lost_after_commit_is_rebuilt_not_created_again(client, tenant):
    issued, headers = tenant
    keyed = {**headers, "Idempotency-Key": "psp-5"}
    body = psp_body(target(client, headers, "Paymaxis"))
    first = client.post(f"{V2}/psps/external", headers=keyed, json=body)
    assert first.status_code == 200
    # As if the database went away between the commit and storing the answer.
    with session_scope() as session:
        session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.environment_id == issued.environment_id)
            .values(response_code=None, response_body=None)
        )
    again = client.post(f"{V2}/psps/external", headers=keyed, json=body)
    assert again.status_code == 200
    assert again.json()["data"]["id"] == first.json()["data"]["id"]
    assert psp_count() == 1


def test_racing_requests_with_one_key_create_one_psp(client, tenant):
    from concurrent.futures import ThreadPoolExecutor

    _, headers = tenant
    keyed = {**headers, "Idempotency-Key": "psp-race"}
    body = psp_body(target(client, headers, "Paymaxis"))
    with ThreadPoolExecutor(6) as pool:
        answers = list(
            pool.map(
                lambda _: client.post(f"{V2}/psps/external", headers=keyed, json=body), range(6)
            )
        )
    assert {a.status_code for a in answers} <= {200, 409}
    ids = {a.json()["data"]["id"] for a in answers if a.status_code == 200}
    assert len(ids) == 1
    assert psp_count() == 1
