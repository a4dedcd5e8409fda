"""Secrets never reach a log line: `redact` and the configured structlog pipeline."""

from __future__ import annotations

import asyncio
import json
import logging
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
    from connxt import logging as connxt_logging

    if connxt_logging._handler is not None:
        connxt_logging._handler.stream = sys.__stderr__  # no flush: that stream is closed


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


EMAIL = "ada.lovelace+vip@example.com"
MERCHANT_TOKEN = "m3rch4nt-t0ken-77"


@pytest.mark.parametrize("env", ["development", "production"])
@pytest.mark.parametrize(
    "name", ["httpx", "celery.app.trace", "uvicorn.error", "sqlalchemy.engine.Engine", "other"]
)
def test_standard_library_loggers_get_the_same_redaction(capsys, logger, env, name):
    logger(env)
    std = logging.getLogger(name)
    # The logger and its parents as a process of ours has them: a server another test ran
    # in this process (with uvicorn's own logging set-up) may have changed them.
    chain = [
        logging.getLogger(".".join(name.split(".")[: n + 1])) for n in range(name.count(".") + 1)
    ]
    kept = [(each, each.disabled, each.propagate, each.level, each.handlers) for each in chain]
    for each in chain:
        each.disabled, each.propagate, each.handlers = False, True, []
        each.setLevel(logging.NOTSET)
    structlog.contextvars.bind_contextvars(request_id="req-7")
    try:
        std.warning(
            'HTTP Request: POST %s "HTTP/1.1 200 OK" for %s',
            f"https://shop.example/hook?order=1&token={MERCHANT_TOKEN}&apiKey={SECRET}",
            EMAIL,
        )
        try:
            raise RuntimeError(f"PSP refused Bearer {SECRET} for {EMAIL}, token {TOKEN}")
        except RuntimeError:
            std.exception("Task notify.deliver raised unexpected")
    finally:
        structlog.contextvars.clear_contextvars()
        for each, disabled, propagate, level, handlers in kept:
            each.disabled, each.propagate, each.handlers = disabled, propagate, handlers
            each.setLevel(level)
    err = capsys.readouterr().err
    assert "HTTP Request" in err and "order=1" in err
    assert "RuntimeError" in err and "raised unexpected" in err and "req-7" in err
    for leaked in (SECRET, TOKEN, MERCHANT_TOKEN, EMAIL, "ada.lovelace"):
        assert leaked not in err
    if env == "production":
        lines = [json.loads(line) for line in err.strip().splitlines()]
        assert [line["logger"] for line in lines] == [name, name]
        assert lines[0]["request_id"] == "req-7" and lines[0]["level"] == "warning"


def test_customer_emails_never_reach_our_own_lines(capsys, logger):
    logger("production").info("psp.call", customer={"email": EMAIL}, note=f"for {EMAIL}")
    err = capsys.readouterr().err
    assert EMAIL not in err and "***@***" in err


def _ours() -> list[logging.Handler]:
    """Root handlers that format through structlog (pytest's own capture handlers aside)."""
    return [
        h
        for h in logging.getLogger().handlers
        if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)
    ]


def test_one_root_handler_however_often_logging_is_set_up(logger):
    from connxt import logging as connxt_logging

    logger()
    logger()
    assert _ours() == [connxt_logging._handler]


def test_celery_adds_no_handler_of_its_own(logger):
    from workers.app import celery_app

    logger()
    root = logging.getLogger()
    level, before = root.level, list(root.handlers)
    type(celery_app.log)._setup = False  # as in a fresh worker process
    try:
        celery_app.log.setup_logging_subsystem(loglevel="INFO")
        # Ours was set up again (by the receiver), and nothing was added beside it.
        assert [type(h) for h in root.handlers] == [type(h) for h in before]
        assert len(_ours()) == 1
        task_handlers = logging.getLogger("celery.task").handlers
        assert all(isinstance(h, logging.NullHandler) for h in task_handlers)
        assert logging.getLogger("celery.task").propagate
        assert root.level == logging.INFO  # the worker's --loglevel still rules
    finally:
        root.setLevel(level)
