"""Step 2 (POST /psps/external) and the PSP management endpoints, against the real database."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from connxt.secrets import key_ring
from storage.db import session_scope
from storage.models import Psp, PspOperation
from storage.psps import open_credential

V2 = "/connxt/v2"
CREATE = f"{V2}/psps/external"
SECRET = "TOPSECRET-9f8e7d"  # inside every credential below; must never come back
STICPAY_CRED = {"merchantEmail": "merchant@example.com", "apiKey": f"stic_{SECRET}"}
PAYMAXIS_CRED = {"apiKey": f"pmx_{SECRET}", "webhookSigningKey": f"whk_{SECRET}"}
API_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")


def checked(response, status: int | None = None):
    """Every answer: never a 500, never the secret, always the envelope."""
    assert response.status_code < 500, response.text
    assert SECRET not in response.text
    body = response.json()
    assert body["code"] == str(response.status_code)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", body["timestamp"]) and body["message"]
    if status is not None:
        assert response.status_code == status, response.text
    if response.status_code >= 400:
        assert isinstance(body["errors"], list) and "data" not in body
        assert all(set(e) == {"field", "message"} for e in body["errors"])
    return body


def psp_rows() -> list[Psp]:
    with session_scope() as session:
        return list(session.scalars(select(Psp)))


def operation_count() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(PspOperation))


@pytest.fixture
def targets(client, tenant) -> dict[str, dict]:
    response = client.get(f"{V2}/flow-types/definitions", params={"type": "PSP"}, headers=tenant[1])
    return {t["name"]: t for t in checked(response, 200)["data"]["targets"]}


def ops(target: dict, *names: str, status: str = "ENABLED") -> list[dict]:
    by_name = {a["name"]: a for a in target["actions"]}
    return [
        {
            "flowActionId": by_name[n]["id"],
            "flowDefinitionId": by_name[n]["definition"]["id"],
            "status": status,
        }
        for n in names or ("DEPOSIT", "WITHDRAW")
    ]


def body_for(target: dict, name: str = "Sticpay", credential: dict | None = None, **extra):
    credential = credential or (STICPAY_CRED if target["name"] == "Sticpay" else PAYMAXIS_CRED)
    return {
        "name": name,
        "logo": "https://example.com/stripe-test.png",
        "credential": json.dumps(credential),
        "flowTargetId": target["id"],
        "operations": ops(target),
        **extra,
    }


@pytest.fixture
def create(client, tenant):
    def create(body, headers=None, status: int | None = 200):
        return checked(client.post(CREATE, json=body, headers=headers or tenant[1]), status)

    return create


def test_create_answers_every_reference_field(create, tenant, targets):
    issued, _ = tenant
    stic = targets["Sticpay"]
    body = body_for(stic, brandId="brn_someoneelse", environmentId="env_someoneelse")
    answer = create(body)
    assert answer["message"] == "Operation completed successfully"
    data = answer["data"]
    assert re.match(r"^psp_[A-Za-z0-9]{26}$", data["id"])
    assert data["name"] == "Sticpay"
    assert data["description"] is None
    assert data["logo"] == "https://example.com/stripe-test.png"
    assert data["credential"] == "***ENCRYPTED***"
    assert (data["brandId"], data["environmentId"]) == (issued.brand_id, issued.environment_id)
    assert data["flowTargetId"] == stic["id"]
    assert data["status"] == "ENABLED"
    assert API_TIME.match(data["createdAt"]) and API_TIME.match(data["updatedAt"])
    assert data["createdBy"] == data["updatedBy"] == issued.environment_id
    assert data["operations"] == body["operations"]
    flow_target = data["flowTarget"]
    assert flow_target["id"] == stic["id"]
    assert isinstance(flow_target["credentialSchema"], str)
    assert json.loads(flow_target["credentialSchema"]) == stic["credentialSchema"]
    assert re.match(r"^ftp_[0-9a-z]{26}$", flow_target["flowTypeId"])
    for field in ("currencies", "countries", "paymentMethods"):
        assert flow_target[field] == stic["inputSchema"][field]["items"]["enum"]
    assert sorted(flow_target["supportedActions"], key=lambda a: a["flowActionName"]) == sorted(
        (
            {"flowActionId": a["id"], "flowDefinitionId": a["definition"]["id"],
             "flowActionName": a["name"]}
            for a in stic["actions"]
        ),
        key=lambda a: a["flowActionName"],
    )
    [row] = psp_rows()
    assert (row.brand_id, row.environment_id) == (issued.brand_id, issued.environment_id)


@pytest.mark.parametrize("target_name", ["Sticpay", "Paymaxis"])
def test_credential_is_stored_sealed(create, targets, target_name):
    body = body_for(targets[target_name], name=f"My {target_name}")
    psp_id = create(body)["data"]["id"]
    [row] = psp_rows()
    assert row.id == psp_id
    assert isinstance(row.credential_sealed, bytes)
    assert SECRET.encode() not in row.credential_sealed
    assert json.loads(body["credential"])["apiKey"].encode() not in row.credential_sealed
    assert open_credential(key_ring(), row) == json.loads(body["credential"])


def test_duplicate_name_same_target_is_409(create, targets):
    create(body_for(targets["Sticpay"]))
    answer = create(body_for(targets["Sticpay"]), status=409)
    assert answer["errors"] == []
    assert len(psp_rows()) == 1
    # The same name on another flow target is another PSP.
    create(body_for(targets["Paymaxis"], name="Sticpay"))
    assert len(psp_rows()) == 2


def test_same_name_in_another_tenant_is_fine(create, make_tenant, targets):
    create(body_for(targets["Sticpay"]))
    _, other_env = make_tenant("acme", "live")
    _, other_brand = make_tenant("globex", "test")
    create(body_for(targets["Sticpay"]), headers=other_env)
    create(body_for(targets["Sticpay"]), headers=other_brand)
    assert len(psp_rows()) == 3


def test_racing_creates_of_one_name_leave_one_psp(client, tenant, targets):
    body = body_for(targets["Sticpay"], name="Racer")
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: client.post(CREATE, json=body, headers=tenant[1]),
                                  range(8)))
    for response in responses:
        checked(response)
    assert sorted(r.status_code for r in responses) == [200] + [409] * 7
    assert len(psp_rows()) == 1
    assert operation_count() == 2


def _other_target_action(b, t):
    b["operations"][0]["flowActionId"] = t["Paymaxis"]["actions"][0]["id"]


def _wrong_definition(b, t):
    b["operations"][0]["flowDefinitionId"] = b["operations"][1]["flowDefinitionId"]


def _set(**values):
    return lambda b, t: b.update(values)


def _drop(field):
    return lambda b, t: b.pop(field)


def _cred(value):
    return _set(credential=value if isinstance(value, str) else json.dumps(value))


def _op(**values):
    return lambda b, t: b["operations"][0].update(values)


BAD_BODIES = [
    ("missing-name", _drop("name"), "name"),
    ("missing-credential", _drop("credential"), "credential"),
    ("missing-flowTargetId", _drop("flowTargetId"), "flowTargetId"),
    ("missing-operations", _drop("operations"), "operations"),
    ("name-number", _set(name=12345), "name"),
    ("name-null", _set(name=None), "name"),
    ("name-blank", _set(name="   "), "name"),
    ("name-very-long", _set(name="x" * 201), "name"),
    ("name-huge", _set(name="x" * 500_000), "name"),
    ("operations-object", _set(operations={"flowActionId": "fat_x"}), "operations"),
    ("operations-empty", _set(operations=[]), "operations"),
    ("operations-item-string", _set(operations=["DEPOSIT"]), "operations[0]"),
    ("credential-object", _set(credential=STICPAY_CRED), "credential"),
    ("credential-not-json", _cred(f"apiKey={SECRET}"), "credential"),
    ("credential-array", _cred([SECRET]), "credential"),
    ("credential-json-string", _cred(json.dumps(SECRET)), "credential"),
    ("credential-missing-apiKey", _cred({"merchantEmail": "m@example.com"}), "credential"),
    ("credential-apiKey-number", _cred({**STICPAY_CRED, "apiKey": 12345}), "credential.apiKey"),
    ("credential-extra", _cred({**STICPAY_CRED, "pin": SECRET}), "credential"),
    ("unknown-flowTargetId", _set(flowTargetId="ftg_01jt2ctt8veh48mkpcx2bdeatz"), "flowTargetId"),
    ("action-of-other-target", _other_target_action, "operations[0].flowActionId"),
    ("wrong-definition", _wrong_definition, "operations[0].flowDefinitionId"),
    ("duplicated-action", lambda b, t: b["operations"].append(b["operations"][0]),
     "operations[2].flowActionId"),
    ("operation-status", _op(status="PAUSED"), "operations[0].status"),
    ("operation-missing-definition",
     lambda b, t: b["operations"][0].pop("flowDefinitionId"), "operations[0].flowDefinitionId"),
    ("operation-extra-field", _op(note="x"), "operations[0].note"),
]


@pytest.mark.parametrize(
    ("mutate", "field"), [c[1:] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES]
)
def test_bad_body_is_400_naming_the_field(create, targets, mutate, field):
    body = body_for(targets["Sticpay"])
    mutate(body, targets)
    answer = create(body, status=400)
    assert field in [e["field"] for e in answer["errors"]], answer["errors"]
    assert all(e["message"] for e in answer["errors"])
    assert psp_rows() == [] and operation_count() == 0


RAW_BODIES = [
    ("not-json", b'{"name": "Sticpay", ', "application/json", "body"),
    ("json-array", b"[1, 2, 3]", "application/json", "body"),
    ("json-string", b'"hello"', "application/json", "body"),
    ("empty", b"", "application/json", "body"),
    ("not-declared-json", b'{"name": "Sticpay"}', "text/plain", "body"),
]


@pytest.mark.parametrize(
    ("content", "content_type", "field"), [c[1:] for c in RAW_BODIES],
    ids=[c[0] for c in RAW_BODIES],
)
def test_body_that_is_not_a_json_object_is_400(client, tenant, content, content_type, field):
    response = client.post(
        CREATE, content=content, headers={**tenant[1], "Content-Type": content_type}
    )
    answer = checked(response, 400)
    assert [e["field"] for e in answer["errors"]] == [field]
    assert psp_rows() == []


def _chunks(total: int):
    sent = 0
    yield b'{"name": "'
    while sent < total:
        yield b"x" * 65536
        sent += 65536
    yield b'"}'


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_oversized_body_is_413(client, tenant, targets, declared):
    oversized = 1024 * 1024 + 10
    if declared:
        body = body_for(targets["Sticpay"], logo="x" * oversized)
        response = client.post(CREATE, json=body, headers=tenant[1])
    else:
        response = client.post(
            CREATE, content=_chunks(oversized),
            headers={**tenant[1], "Content-Type": "application/json"},
        )
    checked(response, 413)
    assert psp_rows() == []


@pytest.mark.parametrize(
    "headers", [{}, {"X-SECRET-TOKEN": "sec_notarealtokennotarealtoken"}], ids=["none", "wrong"]
)
def test_create_without_valid_token_is_401(create, targets, headers):
    create(body_for(targets["Sticpay"]), headers=headers or {"X-Other": "1"}, status=401)
    assert psp_rows() == []


def test_tenant_isolation(client, create, make_tenant, targets):
    mine = create(body_for(targets["Sticpay"], name="Mine"))["data"]
    _, other = make_tenant("globex", "test")
    theirs = create(body_for(targets["Sticpay"], name="Theirs"), headers=other)["data"]
    url = f"{V2}/psps/{mine['id']}"
    checked(client.get(url, headers=other), 404)
    checked(client.patch(url, json={"status": "DISABLED"}, headers=other), 404)
    checked(client.patch(url, json={"credential": json.dumps(STICPAY_CRED)}, headers=other), 404)
    listed = checked(client.get(f"{V2}/psps", headers=other), 200)["data"]["items"]
    assert [p["id"] for p in listed] == [theirs["id"]]
    [row] = [r for r in psp_rows() if r.id == mine["id"]]
    assert row.status == "ENABLED"


def test_get_and_list(client, tenant, create, targets):
    first = create(body_for(targets["Sticpay"], name="One"))["data"]
    second = create(body_for(targets["Paymaxis"], name="Two"))["data"]
    assert checked(client.get(f"{V2}/psps/{first['id']}", headers=tenant[1]), 200)["data"] == first
    items = checked(client.get(f"{V2}/psps", headers=tenant[1]), 200)["data"]["items"]
    assert items == [first, second]
    checked(client.get(f"{V2}/psps/psp_doesnotexist", headers=tenant[1]), 404)


def test_list_is_empty_for_a_new_tenant(client, tenant):
    assert checked(client.get(f"{V2}/psps", headers=tenant[1]), 200)["data"] == {"items": []}


@pytest.fixture
def psp(create, targets):
    return create(body_for(targets["Sticpay"], name="Patched"))["data"]


@pytest.fixture
def patch(client, tenant, psp):
    def patch(body, status: int | None = 200):
        return checked(client.patch(f"{V2}/psps/{psp['id']}", json=body, headers=tenant[1]), status)

    return patch


def test_patch_status(client, tenant, psp, patch):
    data = patch({"status": "DISABLED"})["data"]
    assert data["status"] == "DISABLED"
    assert data["operations"] == psp["operations"] and data["name"] == psp["name"]
    fetched = checked(client.get(f"{V2}/psps/{psp['id']}", headers=tenant[1]))["data"]
    assert fetched["status"] == "DISABLED"
    assert patch({"status": "ENABLED"})["data"]["status"] == "ENABLED"
    patch({"status": "PAUSED"}, status=400)


def test_patch_rename_and_clash(create, targets, psp, patch):
    assert patch({"name": "Renamed"})["data"]["name"] == "Renamed"
    create(body_for(targets["Sticpay"], name="Taken"))
    patch({"name": "Taken"}, status=409)
    assert {r.name for r in psp_rows()} == {"Renamed", "Taken"}


def test_patch_rotates_credential(psp, patch):
    [before] = psp_rows()
    rotated = {"merchantEmail": "new@example.com", "apiKey": f"new_{SECRET}"}
    assert patch({"credential": json.dumps(rotated)})["data"]["credential"] == "***ENCRYPTED***"
    [after] = psp_rows()
    assert after.credential_sealed != before.credential_sealed
    assert SECRET.encode() not in after.credential_sealed
    assert open_credential(key_ring(), after) == rotated


@pytest.mark.parametrize(
    "credential",
    ["not json", json.dumps([SECRET]), json.dumps({"apiKey": SECRET}),
     json.dumps({**STICPAY_CRED, "extra": SECRET}), {"apiKey": SECRET}],
    ids=["not-json", "array", "missing-field", "extra-field", "object"],
)
def test_patch_invalid_credential_changes_nothing(psp, patch, credential):
    [before] = psp_rows()
    answer = patch({"credential": credential, "name": "Should not stick"}, status=400)
    assert any(e["field"].startswith("credential") for e in answer["errors"])
    [after] = psp_rows()
    assert after.credential_sealed == before.credential_sealed
    assert after.name == "Patched"
    assert open_credential(key_ring(), after) == STICPAY_CRED


# On PATCH a missing "operations" means "leave them": every other operations case applies.
PATCH_OPERATION_CASES = [
    c for c in BAD_BODIES if c[2].startswith("operations") and c[0] != "missing-operations"
]


def test_patch_replaces_operations(targets, psp, patch):
    replacement = ops(targets["Sticpay"], "REFUND", "DEPOSIT", status="DISABLED")
    assert patch({"operations": replacement})["data"]["operations"] == replacement
    assert operation_count() == 2


@pytest.mark.parametrize(
    ("mutate", "field"),
    [c[1:] for c in PATCH_OPERATION_CASES],
    ids=[c[0] for c in PATCH_OPERATION_CASES],
)
def test_patch_operations_are_validated_like_create(targets, psp, patch, mutate, field):
    body = {"operations": ops(targets["Sticpay"])}
    mutate(body, targets)
    answer = patch(body, status=400)
    assert field in [e["field"] for e in answer["errors"]], answer["errors"]
    assert patch({})["data"]["operations"] == psp["operations"]


@pytest.mark.parametrize(
    "body", [{"flowTargetId": "ftg_x"}, {"brandId": "brn_x"}, {"name": 5}, {"name": ""}],
    ids=["flowTargetId", "brandId", "name-number", "name-empty"],
)
def test_patch_rejects_fields_it_cannot_change(psp, patch, body):
    answer = patch(body, status=400)
    assert [e["field"] for e in answer["errors"]] == list(body)
    assert psp_rows()[0].name == "Patched"
