"""Step 1 (flow type definitions), catalog sync, and the ingress's generic answers."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, update

from storage.db import new_session, session_scope
from storage.models import ApiToken, FlowAction, FlowDefinition, FlowTarget, FlowType

DEFINITIONS = "/connxt/v2/flow-types/definitions"
STAMP_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
ULID_ID = r"^{}_[0-9a-z]{{26}}$"
ACTIONS = {"DEPOSIT", "WITHDRAW", "REFUND"}


def assert_envelope(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert STAMP_Z.match(body["timestamp"])
    # The stamp is "now", in UTC.
    stamp = datetime.strptime(body["timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    assert body["code"] == str(status)
    assert isinstance(body["message"], str) and body["message"]
    if status < 400:
        assert "data" in body and "errors" not in body
    else:
        assert isinstance(body["errors"], list) and "data" not in body
    return body


def step1(client, headers, flow_type: str = "PSP") -> dict:
    return client.get(DEFINITIONS, params={"type": flow_type}, headers=headers)


@pytest.fixture
def targets(client, tenant) -> dict[str, dict]:
    body = assert_envelope(step1(client, tenant[1]), 200)
    assert body["message"] == "Operation completed successfully"
    assert body["data"]["name"] == "PSP"
    return {t["name"]: t for t in body["data"]["targets"]}


def test_step1_lists_paymaxis_and_sticpay(targets):
    assert {"Paymaxis", "Sticpay"} <= set(targets)
    ids = [t["id"] for t in targets.values()]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("name", ["Paymaxis", "Sticpay"])
def test_step1_target_has_every_reference_field(targets, name):
    target = targets[name]
    assert set(target) == {
        "id",
        "name",
        "logo",
        "status",
        "credentialSchema",
        "inputSchema",
        "actions",
    }
    assert re.match(ULID_ID.format("ftg"), target["id"])
    assert target["name"] == name
    assert isinstance(target["logo"], str)
    assert target["logo"].startswith(("data:image/png;base64,", "https://"))
    assert len(target["logo"]) > 40
    assert target["status"] == "ENABLED"

    schema = target["credentialSchema"]
    assert isinstance(schema, dict) and schema["type"] == "object"
    assert schema["properties"]["apiKey"]["type"] == "string"

    assert set(target["inputSchema"]) == {"paymentMethods", "countries", "currencies"}
    for field in ("paymentMethods", "countries", "currencies"):
        part = target["inputSchema"][field]
        assert part["type"] == "array"
        assert part["items"]["type"] == "string"
        assert part["items"]["enum"] and all(isinstance(v, str) for v in part["items"]["enum"])
    assert "USD" in target["inputSchema"]["currencies"]["items"]["enum"]
    assert all(len(c) == 2 for c in target["inputSchema"]["countries"]["items"]["enum"])

    assert {a["name"] for a in target["actions"]} == ACTIONS
    assert len(target["actions"]) == len(ACTIONS)
    for action in target["actions"]:
        assert set(action) == {"id", "name", "status", "definition"}
        assert action["status"] == "ENABLED"
        assert re.match(ULID_ID.format("fat"), action["id"])
        definition = action["definition"]
        assert set(definition) == {"id", "description", "inputSchema"}
        assert re.match(ULID_ID.format("fld"), definition["id"])
        assert definition["description"] == f"SYS-PSP-{action['name']}-{name.upper()}"
        assert isinstance(definition["inputSchema"], dict)


def test_paymaxis_credential_schema(targets):
    schema = targets["Paymaxis"]["credentialSchema"]
    assert schema["required"] == ["apiKey"]
    assert schema["properties"]["webhookSigningKey"]["type"] == "string"


def test_sticpay_credential_schema(targets):
    schema = targets["Sticpay"]["credentialSchema"]
    assert sorted(schema["required"]) == ["apiKey", "merchantEmail"]
    assert schema["properties"]["merchantEmail"]["type"] == "string"
    assert schema["additionalProperties"] is False


def test_catalog_ids_are_unique_across_targets(targets):
    action_ids = [a["id"] for t in targets.values() for a in t["actions"]]
    definition_ids = [a["definition"]["id"] for t in targets.values() for a in t["actions"]]
    assert len(set(action_ids)) == len(action_ids)
    assert len(set(definition_ids)) == len(definition_ids)


@pytest.mark.parametrize("flow_type", ["NOPE", "psp-x", "ROUTING"])
def test_unknown_flow_type_is_404(client, tenant, flow_type):
    body = assert_envelope(step1(client, tenant[1], flow_type), 404)
    assert body["errors"] == []


def test_type_the_database_cannot_hold_is_400_not_500(client, tenant):
    assert_envelope(step1(client, tenant[1], "PS\x00P"), 400)


@pytest.mark.parametrize("params", [{}, {"type": ""}, {"type": "P" * 51}])
def test_missing_or_bad_type_is_400_naming_type(client, tenant, params):
    body = assert_envelope(client.get(DEFINITIONS, params=params, headers=tenant[1]), 400)
    assert [e["field"] for e in body["errors"]] == ["type"]
    assert all(set(e) == {"field", "message"} and e["message"] for e in body["errors"])


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-SECRET-TOKEN": ""},
        {"X-SECRET-TOKEN": "sec_wrongwrongwrongwrongwrongwrong"},
        {"X-SECRET-TOKEN": "sec_" + "x" * 400},
        {"Authorization": "Bearer sec_notthewaytoauthenticate"},
    ],
    ids=["none", "empty", "wrong", "too-long", "bearer-instead"],
)
def test_step1_without_a_valid_token_is_401(client, tenant, headers):
    body = assert_envelope(step1(client, headers), 401)
    assert body["errors"] == []


def test_revoked_token_is_401(client, tenant):
    issued, headers = tenant
    assert step1(client, headers).status_code == 200
    with session_scope() as session:
        session.execute(
            update(ApiToken)
            .where(ApiToken.environment_id == issued.environment_id)
            .values(revoked_at=func.now())
        )
    # Known tokens are cached for a few seconds per process; past that window the
    # revocation holds. Expire the window rather than sleep through it.
    from api_gateway import auth

    assert auth.TOKEN_CACHE_SECONDS <= 10
    auth._tenants.clear()
    assert_envelope(step1(client, headers), 401)


def _catalog_counts() -> dict[str, int]:
    with session_scope() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model))
            for model in (FlowType, FlowTarget, FlowAction, FlowDefinition)
        }


def _specs():
    from connectors.catalog import target_spec
    from connectors.registry import all_connectors

    return [target_spec(c) for c in all_connectors().values()]


def test_catalog_sync_is_idempotent(client, tenant):
    from storage.catalog import sync_catalog

    before, counts = step1(client, tenant[1]).json()["data"], _catalog_counts()
    for _ in range(2):
        with session_scope() as session:
            created = sync_catalog(session, _specs())
        assert created == {
            "flow_types": 0,
            "flow_targets": 0,
            "flow_actions": 0,
            "flow_definitions": 0,
        }
    assert _catalog_counts() == counts
    assert step1(client, tenant[1]).json()["data"] == before


def test_catalog_sync_refreshes_content_but_keeps_ids(database):
    from dataclasses import replace

    from storage.catalog import load_flow_type, sync_catalog

    session = new_session()
    try:
        before = {t.name: t for t in load_flow_type(session, "PSP")[1]}
        changed = [replace(s, logo="https://example.com/new.png") for s in _specs()]
        assert sum(sync_catalog(session, changed).values()) == 0
        after = {t.name: t for t in load_flow_type(session, "PSP")[1]}
        for name, target in after.items():
            assert target.logo == "https://example.com/new.png"
            assert target.id == before[name].id
            assert [a.id for a in target.actions] == [a.id for a in before[name].actions]
            assert [a.definition_id for a in target.actions] == [
                a.definition_id for a in before[name].actions
            ]
    finally:
        session.rollback()  # the shared catalog stays as synced
        session.close()


def test_wrong_method_is_405_in_the_envelope(client, tenant):
    response = client.delete(DEFINITIONS, headers=tenant[1])
    body = assert_envelope(response, 405)
    assert "GET" in response.headers["allow"]
    assert body["errors"] == []


@pytest.mark.parametrize("path", ["/connxt/v2/nope", "/connxt/v3/flow-types/definitions", "/"])
def test_unknown_path_is_404_in_the_envelope(client, tenant, path):
    body = assert_envelope(client.get(path, headers=tenant[1]), 404)
    assert body["message"] == "Resource not found"


def test_healthz(client):
    assert assert_envelope(client.get("/healthz"), 200)["data"] == {"status": "up"}


def test_readyz_reports_database_and_redis(client):
    body = assert_envelope(client.get("/readyz"), 200)
    # Accounts without a webhook signing key are counted in production only (None here).
    assert body["data"] == {"database": "ok", "redis": "ok", "unsignedPspAccounts": None}


# A duplicate operationId only warns in FastAPI; the test after this one catches it.
@pytest.mark.filterwarnings("ignore:Duplicate Operation ID")
def test_docs_and_openapi(client):
    docs = client.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert "get" in paths[DEFINITIONS]
    assert "post" in paths["/connxt/v2/psps/external"]
    assert "get" in paths["/connxt/v2/psps"]
    assert {"get", "patch"} <= set(paths["/connxt/v2/psps/{psp_id}"])


@pytest.mark.filterwarnings("ignore:Duplicate Operation ID")
def test_openapi_operation_ids_are_unique(client):
    paths = client.get("/openapi.json").json()["paths"]
    ids = [op["operationId"] for item in paths.values() for op in item.values()]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert duplicates == [], f"generated clients would collide on {duplicates}"


def test_request_id_is_echoed_or_issued(client):
    assert (
        client.get("/healthz", headers={"X-Request-ID": "req-123"}).headers["x-request-id"]
        == "req-123"
    )
    assert re.match(r"^[0-9a-f]{16}$", client.get("/healthz").headers["x-request-id"])
