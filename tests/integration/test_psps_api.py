"""Step 2 (POST /psps/external) and the PSP management endpoints, against the real database."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from connxt.secrets import key_ring
from connxt.settings import get_settings
from storage.db import session_scope
from storage.models import Psp, PspOperation
from storage.psps import open_credential
from tests.support.cli import cli

V2 = "/connxt/v2"
CREATE = f"{V2}/psps/external"
SECRET = "TOPSECRET-9f8e7d"  # inside every credential below; must never come back
STICPAY_CRED = {"merchantEmail": "merchant@example.com", "apiKey": f"stic_{SECRET}"}
PAYMAXIS_CRED = {"apiKey": f"pmx_{SECRET}", "webhookSigningKey": f"whk_{SECRET}"}
API_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


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
    supported = {a["flowActionName"]: a for a in flow_target["supportedActions"]}
    assert len(supported) == len(flow_target["supportedActions"]) == len(stic["actions"])
    for action in stic["actions"]:
        assert supported[action["name"]] == {
            "flowActionId": action["id"],
            "flowDefinitionId": action["definition"]["id"],
            "flowActionName": action["name"],
        }
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


def test_name_is_unique_per_tenant_and_target(create, make_tenant, targets):
    create(body_for(targets["Sticpay"]))
    assert create(body_for(targets["Sticpay"]), status=409)["errors"] == []
    assert len(psp_rows()) == 1
    # Another flow target, another environment, another brand: each is another PSP.
    create(body_for(targets["Paymaxis"], name="Sticpay"))
    create(body_for(targets["Sticpay"]), headers=make_tenant("acme", "live")[1])
    create(body_for(targets["Sticpay"]), headers=make_tenant("globex", "test")[1])
    assert len(psp_rows()) == 4


def test_racing_creates_of_one_name_leave_one_psp(client, tenant, targets):
    body = body_for(targets["Sticpay"], name="Racer")
    with ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(lambda _: client.post(CREATE, json=body, headers=tenant[1]), range(8))
        )
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


def _drop(field, op: int | None = None):
    return lambda b, t: (b if op is None else b["operations"][op]).pop(field)


def _cred(value):
    return _set(credential=value if isinstance(value, str) else json.dumps(value))


def _op(**values):
    return lambda b, t: b["operations"][0].update(values)


def _dup_op(b, t):
    b["operations"].append(b["operations"][0])


def case(case_id, *values):
    return pytest.param(*values, id=case_id)


DEEP = "[" * 5000 + "]" * 5000  # deeper than json's recursion limit allows
BAD_BODIES = [
    case("missing-name", _drop("name"), "name"),
    case("missing-credential", _drop("credential"), "credential"),
    case("missing-flowTargetId", _drop("flowTargetId"), "flowTargetId"),
    case("missing-operations", _drop("operations"), "operations"),
    case("name-number", _set(name=12345), "name"),
    case("name-null", _set(name=None), "name"),
    case("name-blank", _set(name="   "), "name"),
    case("name-very-long", _set(name="x" * 201), "name"),
    case("name-huge", _set(name="x" * 500_000), "name"),
    case("name-nul", _set(name="a\u0000b"), "name"),
    case("logo-nul", _set(logo="https://x/\u0000"), "logo"),
    case("description-nul", _set(description="\u0000"), "description"),
    case("flowTargetId-nul", _set(flowTargetId="ftg_\u0000"), "flowTargetId"),
    case("operations-object", _set(operations={"flowActionId": "fat_x"}), "operations"),
    case("operations-empty", _set(operations=[]), "operations"),
    case("operations-item-string", _set(operations=["DEPOSIT"]), "operations[0]"),
    case("credential-object", _set(credential=STICPAY_CRED), "credential"),
    case("credential-not-json", _cred(f"apiKey={SECRET}"), "credential"),
    case("credential-array", _cred([SECRET]), "credential"),
    case("credential-json-string", _cred(json.dumps(SECRET)), "credential"),
    case("credential-deeply-nested", _cred("[" * 9999 + "]" * 9999), "credential"),
    case("credential-deep-inside", _cred('{"apiKey": ' + DEEP + "}"), "credential"),
    case("credential-missing-apiKey", _cred({"merchantEmail": "m@example.com"}), "credential"),
    case("credential-apiKey-number", _cred({**STICPAY_CRED, "apiKey": 12345}), "credential.apiKey"),
    case("credential-extra", _cred({**STICPAY_CRED, "pin": SECRET}), "credential"),
    case("unknown-flowTargetId", _set(flowTargetId="ftg_01jt2ctt8veh48mkpcx2"), "flowTargetId"),
    case("action-of-other-target", _other_target_action, "operations[0].flowActionId"),
    case("wrong-definition", _wrong_definition, "operations[0].flowDefinitionId"),
    case("duplicated-action", _dup_op, "operations[2].flowActionId"),
    case("operation-status", _op(status="PAUSED"), "operations[0].status"),
    case("operation-no-definition", _drop("flowDefinitionId", 0), "operations[0].flowDefinitionId"),
    case("operation-extra-field", _op(note="x"), "operations[0].note"),
]


@pytest.mark.parametrize(("mutate", "field"), BAD_BODIES)
def test_bad_body_is_400_naming_the_field(create, targets, mutate, field):
    body = body_for(targets["Sticpay"])
    mutate(body, targets)
    answer = create(body, status=400)
    assert field in [e["field"] for e in answer["errors"]], answer["errors"]
    assert all(e["message"] for e in answer["errors"])
    assert psp_rows() == [] and operation_count() == 0


RAW_BODIES = [  # (content, content type, answered as "not valid JSON")
    case("not-json", b'{"name": "Sticpay", ', "application/json", True),
    case("json-array", b"[1, 2, 3]", "application/json", False),
    case("json-string", b'"hello"', "application/json", False),
    case("empty", b"", "application/json", False),
    case("not-declared-json", b'{"name": "Sticpay"}', "text/plain", True),
]


@pytest.mark.parametrize(("content", "content_type", "not_json"), RAW_BODIES)
def test_body_that_is_not_a_json_object_is_400(client, tenant, content, content_type, not_json):
    headers = {**tenant[1], "Content-Type": content_type}
    answer = checked(client.post(CREATE, content=content, headers=headers), 400)
    assert [e["field"] for e in answer["errors"]] == ["body"]
    assert (answer["errors"][0]["message"] == "Request body is not valid JSON") is not_json
    assert psp_rows() == []


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_oversized_body_is_413(client, tenant, targets, declared):
    oversized = body_for(targets["Sticpay"], logo="x" * (1024 * 1024))
    content = json.dumps(oversized).encode()
    # Without a declared length the body streams in chunks and is counted as it arrives.
    chunks = (
        content if declared else (content[i : i + 65536] for i in range(0, len(content), 65536))
    )
    headers = {**tenant[1], "Content-Type": "application/json"}
    checked(client.post(CREATE, content=chunks, headers=headers), 413)
    assert psp_rows() == []


@pytest.mark.parametrize(
    "headers", [{}, {"X-SECRET-TOKEN": "sec_notarealtokennotarealtoken"}], ids=["none", "wrong"]
)
def test_psp_endpoints_without_valid_token_are_401(client, create, targets, headers):
    headers = headers or {"X-Other": "1"}
    create(body_for(targets["Sticpay"]), headers=headers, status=401)
    checked(client.get(f"{V2}/psps", headers=headers), 401)
    checked(client.get(f"{V2}/psps/psp_x", headers=headers), 401)
    checked(client.patch(f"{V2}/psps/psp_x", json={"status": "DISABLED"}, headers=headers), 401)
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
    assert checked(client.get(f"{V2}/psps", headers=tenant[1]), 200)["data"] == {"items": []}
    first = create(body_for(targets["Sticpay"], name="One"))["data"]
    second = create(body_for(targets["Paymaxis"], name="Two"))["data"]
    assert checked(client.get(f"{V2}/psps/{first['id']}", headers=tenant[1]), 200)["data"] == first
    items = checked(client.get(f"{V2}/psps", headers=tenant[1]), 200)["data"]["items"]
    assert items == [first, second]
    checked(client.get(f"{V2}/psps/psp_doesnotexist", headers=tenant[1]), 404)


@pytest.mark.parametrize(("path", "status"), [("psp_%00", 400), ("x" * 5000, 404)])
def test_get_odd_ids_is_never_a_500(client, tenant, path, status):
    checked(client.get(f"{V2}/psps/{path}", headers=tenant[1]), status)
    checked(client.patch(f"{V2}/psps/{path}", json={"name": "n"}, headers=tenant[1]), status)


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
    [case("not-json", "not json"), case("array", json.dumps([SECRET]))]
    + [case("missing-field", json.dumps({"apiKey": SECRET})), case("object", {"apiKey": SECRET})]
    + [case("extra-field", json.dumps({**STICPAY_CRED, "extra": SECRET}))],
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
    c for c in BAD_BODIES if c.values[1].startswith("operations") and c.id != "missing-operations"
]


def test_patch_replaces_operations(targets, psp, patch):
    replacement = ops(targets["Sticpay"], "REFUND", "DEPOSIT", status="DISABLED")
    assert patch({"operations": replacement})["data"]["operations"] == replacement
    assert operation_count() == 2


@pytest.mark.parametrize(("mutate", "field"), PATCH_OPERATION_CASES)
def test_patch_operations_are_validated_like_create(targets, psp, patch, mutate, field):
    body = {"operations": ops(targets["Sticpay"])}
    mutate(body, targets)
    answer = patch(body, status=400)
    assert field in [e["field"] for e in answer["errors"]], answer["errors"]
    assert patch({})["data"]["operations"] == psp["operations"]


@pytest.mark.parametrize(
    "body",
    [{"flowTargetId": "ftg_x"}, {"brandId": "brn_x"}, {"name": 5}, {"name": ""}]
    + [{"name": "a\u0000"}, {"logo": "\u0000"}, {"description": 1}],
)
def test_patch_rejects_fields_it_cannot_change(psp, patch, body):
    answer = patch(body, status=400)
    assert [e["field"] for e in answer["errors"]] == list(body)
    assert psp_rows()[0].name == "Patched"


def test_production_accounts_without_a_signing_key_are_refused_listed_and_reported(
    client, create, tenant, targets, monkeypatch
):
    """Accounts made before the key was required (or in development) have none. In
    production their unsigned webhooks are refused, `connxt psps check` lists them, and
    /readyz reports them without taking the process out of service."""
    unsigned = create(body_for(targets["Paymaxis"], "Old", {"apiKey": "pmx_old"}))["data"]
    create(body_for(targets["Paymaxis"], "Signed"))
    create(body_for(targets["Sticpay"], "Sticpay"))  # signs with its API key
    monkeypatch.setenv("CONNXT_ENV", "production")
    get_settings.cache_clear()
    try:
        payment = {"id": "pmx_1", "referenceId": "txn_x", "state": "COMPLETED", "amount": 1}
        webhook = client.post(
            f"{V2}/external/webhooks/{unsigned['id']}", content=json.dumps(payment).encode()
        )
        assert webhook.status_code == 401, webhook.text

        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["data"]["database"] == "ok"
        assert ready.json()["data"]["unsignedPspAccounts"] == 1

        checked_cli = cli("psps", "check")
        assert checked_cli.returncode == 1, checked_cli.stdout + checked_cli.stderr
        (listed,) = [line for line in checked_cli.stdout.splitlines() if "psp_" in line]
        assert unsigned["id"] in listed and "webhookSigningKey" in listed
        assert "Old" in listed and "acme / test" in listed
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    development = cli("psps", "check")
    assert development.returncode == 0, development.stdout + development.stderr
    assert unsigned["id"] in development.stdout
