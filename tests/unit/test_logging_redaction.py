"""Secrets never reach a log line: `redact` and the configured structlog pipeline."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest
import structlog

from api_gateway.middleware import RequestContext
from connxt.logging import REDACTED, configure_logging, redact
from connxt.settings import Settings

TOKEN = "sec_sRhq3pnWTDoGl5HZwKD19vB8tU"
WHSEC = "whsec_c2VjcmV0c2VjcmV0c2VjcmV0"
SECRET = "s3cr3t-VALUE-42"


@pytest.mark.parametrize(
    "key",
    [
        "apiKey",
        "api_key",
        "API_KEY",
        "X-Api-Key",
        "token",
        "access_token",
        "X-SECRET-TOKEN",
        "secret",
        "clientSecret",
        "signature",
        "credential",
        "credentials",
        "webhookSigningKey",
        "signing_key",
        "Authorization",
        "authorization",
        "password",
        "sign",
        "key",
        "webhook-signature",
    ],
)
def test_secret_keys_are_redacted(key):
    assert redact({key: SECRET}) == {key: REDACTED}
    assert redact({key: 12345}) == {key: REDACTED}


@pytest.mark.parametrize(
    "key", ["amount", "currency", "merchantEmail", "name", "status", "keyboard", "monkey"]
)
def test_innocent_keys_are_kept(key):
    assert redact({key: "plain value"}) == {key: "plain value"}


def test_nested_dicts_and_lists():
    value = {
        "psp": {"name": "Sticpay", "credential": {"apiKey": SECRET, "merchantEmail": "m@x.io"}},
        "headers": [{"Authorization": f"Bearer {SECRET}"}, {"Accept": "application/json"}],
        "items": [{"deep": [{"apiKey": SECRET, "amount": 10}]}],
        "pair": ("ok", {"token": SECRET}),
        "count": 3,
        "none": None,
    }
    out = redact(value)
    assert SECRET not in json.dumps(out)
    assert out["psp"] == {"name": "Sticpay", "credential": REDACTED}
    assert out["headers"] == [{"Authorization": REDACTED}, {"Accept": "application/json"}]
    assert out["items"] == [{"deep": [{"apiKey": REDACTED, "amount": 10}]}]
    assert out["pair"] == ["ok", {"token": REDACTED}]
    assert (out["count"], out["none"]) == (3, None)
    # The input is not modified.
    assert value["psp"]["credential"]["apiKey"] == SECRET


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"calling with {TOKEN} now", TOKEN),
        (f"token={TOKEN}", TOKEN),
        (f"header was Bearer {SECRET}", SECRET),
        (f"Bearer\t{SECRET}", SECRET),
        (f"signing with {WHSEC}", WHSEC[6:]),
    ],
)
def test_secret_looking_values_are_redacted_under_innocent_keys(text, secret):
    out = redact({"message": text, "list": [text]})
    assert secret not in out["message"] and REDACTED in out["message"]
    assert secret not in out["list"][0]


@pytest.mark.parametrize(
    "value",
    [
        "USD",
        "Operation completed successfully",
        "section_headers",
        "sec_short",
        12.5,
        True,
        None,
        "",
        ["a", 1],
        {"orderId": "ORDER_123", "amount": "200.00"},
    ],
)
def test_non_secret_values_are_untouched(value):
    assert redact(value) == value
    assert redact({"field": value}) == {"field": value}


@pytest.fixture
def logger(capsys):
    """A logger configured as the service does, writing to the captured stderr."""

    def make(env: str = "development"):
        configure_logging(Settings(env=env, log_level="DEBUG", encryption_keys=None))
        return structlog.get_logger("test")

    yield make
    # Later loggers must not write to this test's (closed) capture stream.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.__stderr__))


def _secret_kwargs() -> dict:
    return {
        "apiKey": SECRET,
        "token": TOKEN,
        "webhookSigningKey": SECRET,
        "credential": {"apiKey": SECRET, "merchantEmail": "m@example.com"},
        "headers": {"Authorization": f"Bearer {SECRET}", "X-SECRET-TOKEN": TOKEN},
        "note": f"retrying with {TOKEN}",
        "psp_id": "psp_abc",
    }


@pytest.mark.parametrize("env", ["development", "production"])
@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
def test_logged_keywords_never_show_secrets(capsys, logger, env, level):
    getattr(logger(env), level)("psp.call", **_secret_kwargs())
    err = capsys.readouterr().err
    assert "psp.call" in err and "psp_abc" in err
    assert SECRET not in err and TOKEN not in err
    if env == "production":
        line = json.loads(err.strip().splitlines()[-1])
        assert line["apiKey"] == REDACTED and line["credential"] == REDACTED
        assert line["headers"] == {"Authorization": REDACTED, "X-SECRET-TOKEN": REDACTED}
        assert line["level"] == level


def test_bound_and_contextvar_fields_are_redacted(capsys, logger):
    log = logger("production").bind(token=TOKEN)
    structlog.contextvars.bind_contextvars(apiKey=SECRET)
    try:
        log.info("psp.bound", txn="txn_1")
    finally:
        structlog.contextvars.clear_contextvars()
    err = capsys.readouterr().err
    assert "txn_1" in err and SECRET not in err and TOKEN not in err


@pytest.mark.parametrize("env", ["development", "production"])
def test_exception_text_is_redacted(capsys, logger, env):
    try:
        raise RuntimeError(f"PSP refused Bearer {SECRET} and {TOKEN}")
    except RuntimeError:
        logger(env).exception("psp.failed")
    err = capsys.readouterr().err
    assert "RuntimeError" in err and "psp.failed" in err
    assert SECRET not in err and TOKEN not in err


def test_request_id_stays_bound_for_the_error_handler_outside():
    """Starlette's 500 handler runs outside RequestContext: its log line needs the id."""

    async def failing_app(scope, receive, send):
        raise RuntimeError("boom")

    async def run():
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/x",
            "headers": [(b"x-request-id", b"req-42")],
        }
        try:
            await RequestContext(failing_app)(scope, None, None)
        except RuntimeError:
            return structlog.contextvars.get_contextvars()

    assert asyncio.run(run()) == {"request_id": "req-42"}
