"""The OpenAPI document tells a client what the reference does not: Step 3's 202, refunds,
the customer's return pages, the headers that change an answer, and every refusal."""

from __future__ import annotations

import pytest

STEP3 = "/connxt/v2/transactions"
ERROR = "#/components/schemas/ErrorEnvelope"


@pytest.fixture(scope="module")
def document():
    from fastapi.testclient import TestClient

    from api_gateway.app import create_app

    return TestClient(create_app()).get("/openapi.json").json()


def resolve(document: dict, node: dict) -> dict:
    while "$ref" in node:
        node = document["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def test_step3_describes_its_202_answer_with_an_example(document):
    answer = document["paths"][STEP3]["post"]["responses"]["202"]
    content = answer["content"]["application/json"]
    assert content["example"]["code"] == "202"
    assert set(content["example"]["data"]) == {"txnId", "status"}
    data = resolve(document, resolve(document, content["schema"])["properties"]["data"])
    assert set(data["required"]) == {"txnId", "status"}


def test_step3_documents_refunds_and_return_pages_with_examples(document):
    body = document["paths"][STEP3]["post"]["requestBody"]["content"]["application/json"]
    properties = body["schema"]["properties"]
    assert "refund" in properties["parentTxnId"]["description"].lower()
    assert properties["parentTxnId"]["examples"]
    urls = properties["executePayload"]["properties"]["body"]["properties"]["urls"]
    assert set(urls["properties"]) == {"successUrl", "failureUrl", "returnUrl"}
    assert properties["txnAmount"]["type"] == "number"
    examples = {name: e["value"] for name, e in body["examples"].items()}
    assert examples["refund"]["parentTxnId"]
    assert set(examples["deposit"]["executePayload"]["body"]["urls"]) == set(urls["properties"])


@pytest.mark.parametrize("header", ["Idempotency-Key", "Prefer"])
def test_step3_headers_that_change_the_answer_have_examples(document, header):
    (parameter,) = [
        p for p in document["paths"][STEP3]["post"]["parameters"] if p["name"] == header
    ]
    assert parameter["in"] == "header" and parameter["description"] and parameter["example"]
    if header == "Prefer":
        assert parameter["example"] == "respond-async"


def test_step3_lists_every_refusal_in_the_error_envelope(document):
    responses = document["paths"][STEP3]["post"]["responses"]
    assert {"400", "401", "409", "413", "422", "429", "503"} <= set(responses)


def test_every_refusal_of_every_operation_is_the_error_envelope(document):
    assert "HTTPValidationError" not in document["components"]["schemas"]
    codes = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            refusals = {c: r for c, r in operation["responses"].items() if int(c) >= 400}
            if path != "/healthz":
                assert "503" in refusals, where
            for code, response in refusals.items():
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR}, where
                assert response["description"], where
                codes.add(code)
    assert codes == {"400", "401", "404", "409", "413", "422", "429", "503"}
    error = resolve(document, {"$ref": ERROR})
    assert set(error["required"]) == {"timestamp", "code", "message", "errors"}


def test_every_success_of_every_operation_names_its_data_model(document):
    """No answer is documented as a bare object: each success's `data` is a response model
    whose fields are all listed (and no others allowed), so /docs shows every answer."""
    seen = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            successes = {c: r for c, r in operation["responses"].items() if int(c) < 300}
            if path.startswith("/connxt/v2/external/redirects/"):
                assert not successes, where  # 303s only
                continue
            assert successes, where
            for answer in successes.values():
                envelope = resolve(document, answer["content"]["application/json"]["schema"])
                data = envelope["properties"]["data"]
                alternatives = data.get("anyOf", [data])
                for alternative in alternatives:
                    model = resolve(document, alternative)
                    assert model.get("additionalProperties") is False, where
                    assert set(model["required"]) == set(model["properties"]), where
                    seen.add(alternative["$ref"].rsplit("/", 1)[-1])
    assert {"Transaction", "Step3Redirect", "Step3Refused", "Step3Direct", "Psp"} <= seen
