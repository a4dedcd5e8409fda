"""Each resource's one shaping function writes exactly what its response model declares.

Rows are built in memory in every shape a transaction takes (fresh, sent to the PSP's page,
refused, settled, held for review, resolved, a refund), shaped as an answer writes them,
and validated against the schema the OpenAPI document gives for them: every key the model
lists is there, no other, each of its declared type. (The suite's HTTP clients check every
answer they receive the same way: tests/support/contract.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import orjson
import pytest
from jsonschema import Draft202012Validator

from api_gateway.transactions.answers import step3_answer
from state_machine import Source, Status
from storage.models import (
    InboxMessage,
    Notification,
    NotificationAttempt,
    NotificationStatus,
    Transaction,
    TransactionEvent,
)
from storage.transaction_view import (
    ANSWER_COLUMNS,
    VIEW_COLUMNS,
    event_view,
    notification_view,
    transaction_view,
    webhook_view,
)
from tests.support.contract import document

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
NAVIGATION = {"type": "redirect", "contentType": "url", "value": "https://pay.example/x"}
META = {
    "pspState": "CHECKOUT",
    "http": [
        {
            "method": "POST",
            "url": "https://psp.example/payments",
            "request": {"amount": "10.00", "apiKey": "***"},
            "statusCode": 200,
            "response": {"id": "p_1"},
            "elapsedMs": 12.5,
            "error": None,
        }
    ],
}


def schema_of(name: str) -> Draft202012Validator:
    components = document()["components"]
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": components})


def assert_matches(name: str, shaped: dict) -> None:
    # Through JSON, as the answer is written: amounts are orjson Fragments.
    written = orjson.loads(orjson.dumps(shaped))
    problems = [
        f"{list(e.absolute_path)}: {e.message}" for e in schema_of(name).iter_errors(written)
    ]
    assert not problems, problems


def txn(**changes) -> Transaction:
    row = Transaction(
        id="txn_1",
        brand_id="brn_1",
        environment_id="env_1",
        psp_id="psp_1",
        flow_action_id="fat_1",
        flow_target_id="ftg_1",
        transaction_type="deposit",
        amount=Decimal("10.50"),
        currency="USD",
        status=Status.CREATED,
        parent_txn_id=None,
        psp_txn_id=None,
        order_id="ord_1",
        user_id="cust_1",
        navigation=None,
        error=None,
        psp_meta=None,
        review_reason=None,
        review_detail=None,
        review_opened_at=None,
        review_resolved_at=None,
        review_resolution=None,
        review_note=None,
        created_at=NOW,
        updated_at=NOW,
    )
    for name, value in changes.items():
        setattr(row, name, value)
    return row


SHAPES = {
    "created": txn(),
    "at the PSP's page": txn(
        status=Status.PG_ACCEPTED, psp_txn_id="p_1", navigation=NAVIGATION, psp_meta=META
    ),
    "refused": txn(
        status=Status.PG_REJECTED,
        error={"code": "PG_REJECTED", "message": "card declined"},
        psp_meta=META,
    ),
    "failed after its page": txn(
        status=Status.FAILED,
        navigation=NAVIGATION,
        error={"code": "EXPIRED", "message": "expired"},
        psp_meta=META,
    ),
    "withdrawn": txn(
        status=Status.SUCCESS, transaction_type="withdrawal", psp_txn_id="p_2", psp_meta=META
    ),
    "held for review": txn(
        status=Status.PG_ACCEPTED,
        review_reason="amount_mismatch",
        review_detail={
            "pspAmount": "9.50",
            "pspCurrency": "USD",
            "pspState": "COMPLETED",
            "source": "webhook",
        },
        review_opened_at=NOW,
    ),
    "review resolved": txn(
        status=Status.SUCCESS,
        review_reason="late_success",
        review_detail={"pspAmount": None, "pspCurrency": None, "pspState": None, "source": None},
        review_opened_at=NOW,
        review_resolved_at=NOW + timedelta(minutes=5),
        review_resolution="SUCCESS",
        review_note="checked with the PSP",
    ),
    "a short payment resolved SUCCESS": txn(
        status=Status.SUCCESS,
        amount=Decimal("200.00"),
        review_reason="amount_mismatch",
        review_detail={
            "pspAmount": "5.00",
            "pspCurrency": "USD",
            "pspState": "COMPLETED",
            "source": "webhook",
            "pspTxnId": "p_1",
        },
        review_opened_at=NOW,
        review_resolved_at=NOW + timedelta(minutes=5),
        review_resolution="SUCCESS",
        review_note="the customer paid 5",
        review_resolved_by="ops-alice",
        captured_amount=Decimal("5.00000000"),
        captured_currency="USD",
    ),
    "a late success in yen resolved SUCCESS": txn(
        status=Status.FAILED,
        review_reason="late_success",
        review_detail={"pspAmount": "1500", "pspCurrency": "JPY", "pspState": "COMPLETED"},
        review_opened_at=NOW,
        review_resolved_at=NOW,
        review_resolution="SUCCESS",
        review_note="kept",
        review_resolved_by="root",
        captured_amount=Decimal("1500"),
        captured_currency="JPY",
    ),
    "a refund in yen": txn(
        transaction_type="refund", parent_txn_id="txn_0", amount=Decimal("500"), currency="JPY"
    ),
}


@pytest.mark.parametrize("row", SHAPES.values(), ids=SHAPES.keys())
def test_a_transaction_is_shaped_as_its_model(row):
    assert_matches("Transaction", transaction_view(row, 0 if row.currency == "JPY" else 2))


def only(row: Transaction, columns: tuple[str, ...]) -> SimpleNamespace:
    return SimpleNamespace(**{c: getattr(row, c) for c in columns})


@pytest.mark.parametrize("row", SHAPES.values(), ids=SHAPES.keys())
def test_the_view_columns_are_all_a_shape_reads(row):
    """A statement that reads only VIEW_COLUMNS (a notification's lease) or ANSWER_COLUMNS
    (the Step 3 answer) shapes the transaction as its full row does."""
    places = 0 if row.currency == "JPY" else 2
    whole = orjson.dumps(transaction_view(row, places))
    assert orjson.dumps(transaction_view(only(row, VIEW_COLUMNS), places)) == whole
    for respond_async in (False, True):
        answer = orjson.dumps(step3_answer(row, respond_async))
        assert orjson.dumps(step3_answer(only(row, ANSWER_COLUMNS), respond_async)) == answer


@pytest.mark.parametrize("row", SHAPES.values(), ids=SHAPES.keys())
def test_step3_answers_are_shaped_as_their_models(row):
    for respond_async in (False, True):
        status, _, data = step3_answer(row, respond_async)
        assert_matches(
            "Step3Accepted" if status == 202 else "Step3Answer",
            {
                "timestamp": "2026-01-02T03:04:05Z",
                "code": str(status),
                "message": "m",
                "data": data,
            },
        )


def test_step3_redirect_and_refusal_are_told_apart_by_their_models():
    """The union is not so loose that any object passes: each decided answer matches the
    one shape it is, and a redirect stripped of its page matches none."""
    _, _, redirect = step3_answer(SHAPES["at the PSP's page"])
    _, _, refused = step3_answer(SHAPES["refused"])
    assert not list(schema_of("Step3Redirect").iter_errors(orjson.loads(orjson.dumps(redirect))))
    assert list(schema_of("Step3Redirect").iter_errors(orjson.loads(orjson.dumps(refused))))
    assert not list(schema_of("Step3Refused").iter_errors(orjson.loads(orjson.dumps(refused))))
    del redirect["data"]["data"]["navigation"]
    answer = {"timestamp": "2026-01-02T03:04:05Z", "code": "200", "message": "m", "data": redirect}
    assert list(schema_of("Step3Answer").iter_errors(orjson.loads(orjson.dumps(answer))))


def test_an_event_is_shaped_as_its_model():
    for event in (
        TransactionEvent(
            txn_id="txn_1",
            from_status=None,
            to_status=Status.CREATED,
            source=Source.API,
            reason=None,
            created_at=NOW,
        ),
        TransactionEvent(
            txn_id="txn_1",
            from_status=Status.INITIATED,
            to_status=Status.PG_ACCEPTED,
            source=Source.PSP_RESPONSE,
            reason="CHECKOUT",
            created_at=NOW,
        ),
    ):
        assert_matches("TransactionEvent", event_view(event))


def test_a_webhook_is_shaped_as_its_model():
    for processed in (None, NOW):
        message = InboxMessage(
            id=7,
            psp_id="psp_1",
            event_key="p_1:COMPLETED",
            txn_id="txn_1",
            verified=True,
            attempts=1,
            result=None if processed is None else "applied",
            received_at=NOW,
            processed_at=processed,
            parked_at=None,
        )
        assert_matches("Webhook", webhook_view(message))


def test_a_notification_is_shaped_as_its_model():
    notification = Notification(
        id="ntf_1",
        txn_id="txn_1",
        environment_id="env_1",
        event_type="transaction.success",
        status=NotificationStatus.PENDING,
        attempts=2,
        next_attempt_at=NOW,
        delivered_at=None,
        created_at=NOW,
    )
    attempts = [
        NotificationAttempt(
            notification_id="ntf_1",
            url="https://shop.example/hook",
            status_code=None,
            error="ConnectError",
            elapsed_ms=Decimal("3.2"),
            created_at=NOW,
        ),
        NotificationAttempt(
            notification_id="ntf_1",
            url="https://shop.example/hook",
            status_code=500,
            error=None,
            elapsed_ms=None,
            created_at=NOW,
        ),
    ]
    assert_matches("Notification", notification_view(notification, attempts))
    assert_matches("Notification", notification_view(notification, []))


def test_a_key_the_model_does_not_declare_is_refused():
    """The check has teeth: an extra field, or a missing one, fails."""
    shaped = transaction_view(SHAPES["created"])
    with pytest.raises(AssertionError):
        assert_matches("Transaction", {**shaped, "secret": "x"})
    del shaped["review"]
    with pytest.raises(AssertionError):
        assert_matches("Transaction", shaped)


def test_the_suites_answer_check_refuses_what_the_document_does_not_say():
    """The hook on the suite's HTTP clients (tests/support/contract.py) fails a test on an
    answer off the document: a shape it does not give, or a status it does not list."""
    import httpx

    from tests.support.contract import check

    def answer(status: int, data: dict, path: str = "/healthz") -> httpx.Response:
        body = {"timestamp": "2026-01-02T03:04:05Z", "code": str(status), "message": "m"}
        return httpx.Response(
            status, json={**body, "data": data}, request=httpx.Request("GET", f"http://t{path}")
        )

    check(answer(200, {"status": "up"}))
    with pytest.raises(AssertionError, match="does not match"):
        check(answer(200, {"status": "up", "extra": 1}))
    with pytest.raises(AssertionError, match="does not list"):
        check(answer(418, {"status": "up"}))
    check(answer(200, {"anything": 1}, path="/not-in-the-document"))


def test_the_captured_amount_is_written_digit_for_digit_in_its_own_currency():
    short = orjson.loads(orjson.dumps(transaction_view(SHAPES["a short payment resolved SUCCESS"])))
    assert (short["txnAmount"], short["capturedAmount"], short["capturedCurrency"]) == (
        200.0,
        5.0,
        "USD",
    )
    written = orjson.dumps(transaction_view(SHAPES["a late success in yen resolved SUCCESS"]))
    assert b'"capturedAmount":1500,"capturedCurrency":"JPY"' in written
    assert b'"txnAmount":10.50' in written
    plain = orjson.dumps(transaction_view(SHAPES["withdrawn"]))
    assert b'"capturedAmount":10.50,"capturedCurrency":"USD"' in plain
    fresh = transaction_view(SHAPES["created"])
    assert fresh["capturedAmount"] is None and fresh["capturedCurrency"] is None
    odd = txn(status=Status.SUCCESS, captured_amount=Decimal("5.005"), captured_currency="USD")
    assert b'"capturedAmount":5.005' in orjson.dumps(transaction_view(odd)), "never rounded"
