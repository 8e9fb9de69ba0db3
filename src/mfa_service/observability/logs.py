"""Logs through structlog: `MFA_LOG_FORMAT=json` gives one JSON object a line (timestamp,
level, logger, message, request_id and the fields of the line), `text` a readable line.

Every record goes through the same chain, whether it was written with the standard `logging`
module (ours, uvicorn's, SQLAlchemy's, alembic's) or with structlog: the standard library's
root handler formats with structlog's ProcessorFormatter. The chain ends with `redact`, so no
password, code, token, secret or full email leaves the process even if some log call were
careless.

`dict_config()` is a `logging.config.dictConfig` document: `serve` hands it to uvicorn, which
applies it in every worker process it starts (they import nothing of their parent's state).
"""

from __future__ import annotations

import logging
import logging.config
import re
from contextvars import ContextVar
from typing import Any, Literal

import structlog
from structlog.types import EventDict, WrappedLogger

LogFormat = Literal["json", "text"]

# The request being answered (set by the observability middleware), for every line it logs.
request_id: ContextVar[str | None] = ContextVar("mfa_request_id", default=None)

REDACTED = "[redacted]"
# Field names whose values are secrets, whatever they hold (matched in lower case).
_SECRET_NAMES = ("password", "secret", "token", "authorization", "cookie", "otp", "data_key")
_SECRET_EXACT = frozenset({"code", "codes", "backup_code", "backup_codes", "credential"})
_KEEP = frozenset({"timestamp", "level", "logger", "request_id", "route", "method"})

_SCRUB: tuple[tuple[re.Pattern[str], str], ...] = (
    # A JWT (three base64url parts, the first a JSON object).
    (re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[jwt]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s,;\"']+"), r"\1 " + REDACTED),
    (re.compile(r"otpauth://\S+"), "[otpauth-uri]"),
    # An email: the first character and the domain stay, for a person to follow a case.
    (
        re.compile(r"([A-Za-z0-9])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"),
        r"\1***@\2",
    ),
    # Opaque tokens (refresh, device, challenge: 43+ url-safe characters); UUIDs are shorter.
    (re.compile(r"[A-Za-z0-9_-]{40,}"), REDACTED),
    # A base32 TOTP secret.
    (re.compile(r"\b[A-Z2-7]{16,}\b"), REDACTED),
    # A backup code as shown to users (xxxxx-xxxxx).
    (re.compile(r"\b[0-9a-hjkmnp-tv-z]{5}-[0-9a-hjkmnp-tv-z]{5}\b", re.IGNORECASE), REDACTED),
)


def scrub(text: str) -> str:
    for pattern, replacement in _SCRUB:
        text = pattern.sub(replacement, text)
    return text


def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_EXACT or any(part in lowered for part in _SECRET_NAMES)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {
            k: REDACTED if _is_secret_name(str(k)) else _redact_value(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


def redact(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """The last step before rendering: secret-named fields blanked, every string scrubbed."""
    for key, value in list(event.items()):
        if key in _KEEP:
            continue
        if _is_secret_name(key):
            event[key] = REDACTED
        else:
            event[key] = _redact_value(value)
    return event


def add_request_id(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    rid = request_id.get()
    if rid is not None:
        event.setdefault("request_id", rid)
    return event


_FIRST = ("timestamp", "level", "logger", "message", "request_id")


def _in_order(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """The fixed fields first, so a person reading the raw lines finds them in place."""
    ordered = {key: event.pop(key) for key in _FIRST if key in event}
    ordered.update(event)
    return ordered


def _drop_color_message(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    event.pop("color_message", None)  # uvicorn's copy of the message with ANSI colours
    return event


_PRE_CHAIN: list[Any] = [
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    structlog.stdlib.ExtraAdder(),
    _drop_color_message,
    add_request_id,
]


def _configure_structlog() -> None:
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_PRE_CHAIN,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def formatter(log_format: LogFormat = "text") -> logging.Formatter:
    """The root handler's formatter (a dictConfig factory: `"()"`); configures structlog
    too, so a worker process that only applied the dictConfig logs the same way."""
    _configure_structlog()
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False, event_key="message")
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_PRE_CHAIN,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            redact,
            _in_order,
            renderer,
        ],
    )


def dict_config(log_format: LogFormat, level: int | str = logging.INFO) -> dict[str, Any]:
    """Everything to stderr through one structlog formatter; uvicorn's loggers propagate to
    it. uvicorn's access log stays off: the middleware writes one line per request with the
    request id, route template, status and duration."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structlog": {"()": f"{__name__}.formatter", "log_format": log_format}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "structlog",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }


def configure(log_format: LogFormat, level: int | str = logging.INFO) -> None:
    logging.config.dictConfig(dict_config(log_format, level))
