"""structlog set-up: JSON in production, readable in development, secrets always redacted."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from connxt.settings import Settings

REDACTED = "***"

# Keys whose values are secrets wherever they appear, at any depth.
_SECRET_KEY = re.compile(
    r"(api[_-]?key|secret|token|password|signing[_-]?key|credential|authorization|signature|^sign$"
    r"|^key$|webhook-signature)",
    re.IGNORECASE,
)
# Values that look like secrets even under an innocent key.
_SECRET_VALUE = re.compile(r"(sec_[A-Za-z0-9_\-]{8,}|whsec_[A-Za-z0-9+/=]{8,}|Bearer\s+\S+)")


def redact(value: Any, key: str | None = None) -> Any:
    """A copy of ``value`` with secrets replaced; used for logs and stored PSP exchanges."""
    if key is not None and _SECRET_KEY.search(key) and value not in (None, "", REDACTED):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _SECRET_VALUE.sub(REDACTED, value)
    return value


def _redact_processor(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if k == "event" else redact(v, k)) for k, v in event_dict.items()}


def configure_logging(settings: Settings) -> None:
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.is_production
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # Tracebacks become text first, so the redaction sees (and scrubs) them too.
            structlog.processors.format_exc_info,
            _redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
