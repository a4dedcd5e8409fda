"""One logging pipeline: JSON in production, readable in development, secrets and customer
e-mail addresses always redacted.

Our own lines are structlog's. The standard library's loggers (httpx, Celery, uvicorn,
SQLAlchemy, anything a dependency logs) go through the same processors on the root
handler (structlog's ``ProcessorFormatter``): the same request and task ids from the
context, the same redaction, the same renderer. Celery is told not to set up logging of its
own (``setup_logging``, workers.app), so none of its handlers bypass this one.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

from connxt.settings import Settings
from connxt.tracing import log_ids
from connxt.tracing import wanted as tracing_wanted

REDACTED = "***"

# Keys whose values are secrets wherever they appear, at any depth.
_SECRET_KEY = re.compile(
    r"(api[_-]?key|secret|token|password|signing[_-]?key|credential|authorization|signature|^sign$"
    r"|^key$|webhook-signature)",
    re.IGNORECASE,
)
# Values that look like secrets even under an innocent key.
_SECRET_VALUE = re.compile(r"(sec_[A-Za-z0-9_\-]{8,}|whsec_[A-Za-z0-9+/=]{8,}|Bearer\s+\S+)")
# In log text only: e-mail addresses (customers', merchants'), and the values of
# ``name=value`` pairs (a URL's query, a form) whose name is a secret's.
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b")
EMAIL_REDACTED = "***@***"
_PAIR = re.compile(r"([A-Za-z0-9_.\-]+)=([^&\s\"'<>,;]+)")


def _secret_pair(match: re.Match[str]) -> str:
    return f"{match[1]}={REDACTED}" if _secret_key(match[1]) else match[0]


@functools.lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    # Keys repeat (the same PSP fields, the same log keys): each is matched once.
    return _SECRET_KEY.search(key) is not None


def redact(value: Any, key: str | None = None, for_log: bool = False) -> Any:
    """A copy of ``value`` with secrets replaced; used for logs and stored PSP exchanges.
    ``for_log``: e-mail addresses and secret ``name=value`` pairs in text too (a stored
    exchange keeps what was sent, secrets aside)."""
    if key is not None and _secret_key(key) and value not in (None, "", REDACTED):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, str(k), for_log) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, None, for_log) for v in value]
    if isinstance(value, str):
        # Every secret-looking value has one of these in it: most text needs no regex.
        if "sec_" in value or "Bearer" in value:
            value = _SECRET_VALUE.sub(REDACTED, value)
        if for_log:
            if "@" in value:
                value = _EMAIL.sub(EMAIL_REDACTED, value)
            if "=" in value:
                value = _PAIR.sub(_secret_pair, value)
        return value
    return value


def _redact_processor(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    # The event is a stable name for our own lines, but the whole message for a standard
    # library record (an httpx URL, a Celery error): it is scrubbed as a value too.
    return {
        k: (v if k.startswith("_") else redact(v, None if k == "event" else k, for_log=True))
        for k, v in event_dict.items()
    }


def _add_trace_ids(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    # A line may name its trace itself (connxt.tracing.item_log_ids): that one stands.
    for key, value in log_ids().items():
        event_dict.setdefault(key, value)
    return event_dict


def _renderer(settings: Settings) -> Any:
    if settings.is_production:
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(colors=False)


# The root handler this module installed, replaced (not added again) on a later call.
_handler: logging.Handler | None = None


def configure_logging(settings: Settings, stdlib_level: int | str | None = None) -> None:
    """Set up structlog and the root handler. ``stdlib_level``: the standard library's level
    when the process was told one (Celery's ``--loglevel``); otherwise the settings' level on
    the first call, and whatever it is now on later calls."""
    global _handler
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    renderer = _renderer(settings)
    # Traces on (connxt.tracing): every line carries the ids of the span it was written in.
    trace_ids = [_add_trace_ids] if tracing_wanted() else []
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *trace_ids,
            # Tracebacks become text first, so the redaction sees (and scrubs) them too.
            structlog.processors.format_exc_info,
            _redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # One write per line (print() writes the line and its newline apart, and a library's
        # record from another thread could land between them).
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *trace_ids,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redact_processor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    first = _handler is None or _handler not in root.handlers
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    _handler = handler
    if stdlib_level is not None:
        root.setLevel(stdlib_level)
    elif first:
        root.setLevel(level)
    # httpx logs every request at INFO: a line per PSP call and per merchant notification,
    # which the connectors record themselves (data.meta, and at DEBUG). Shown when
    # CONNXT_LOG_LEVEL is DEBUG.
    # Celery's worker logs two INFO lines per message ("received", "succeeded in"): at
    # volume they cost more than the message's own bookkeeping, and every transition is
    # logged by us. Failures and retries are WARNING or above and stay.
    chatty = logging.DEBUG if level <= logging.DEBUG else logging.WARNING
    for name in ("httpx", "celery.worker.strategy"):
        logging.getLogger(name).setLevel(chatty)
    trace = logging.getLogger("celery.app.trace")  # its retries are worth a line: kept
    trace.removeFilter(_quiet_success)
    if level > logging.DEBUG:
        trace.addFilter(_quiet_success)


def _quiet_success(record: logging.LogRecord) -> bool:
    """Drops Celery's "Task … succeeded in …" line (see configure_logging)."""
    return not str(record.msg).startswith("Task %(name)s[%(id)s] succeeded")
