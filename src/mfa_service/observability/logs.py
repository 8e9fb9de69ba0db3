"""Logs through structlog: `MFA_LOG_FORMAT=json` gives one JSON object a line (timestamp,
level, logger, message, request_id and the fields of the line), `text` a readable line.

Every record takes the same path, whether it was written with the standard `logging` module
(ours, uvicorn's, SQLAlchemy's, alembic's) or with structlog (whose loggers write through the
standard library): the root handler's `Formatter` makes it an event, `redact` blanks and
scrubs it, and structlog's renderer writes it. So no password, code, token, secret or full
email leaves the process even if some log call were careless.

`dict_config()` is a `logging.config.dictConfig` document: `serve` hands it to uvicorn, which
applies it in every worker process it starts (they import nothing of their parent's state).
"""

from __future__ import annotations

import functools
import logging
import logging.config
import re
import time
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
_KEEP = frozenset({"timestamp", "level", "logger", "request_id", "route", "method", "status"})

_BACKUP_CHAR = "[0-9a-hjkmnp-tv-zA-HJKMNP-TV-Z]"  # Crockford base32, either case
# One pass over a string finds every kind of secret; earlier alternatives win at a position.
_SECRETS = re.compile(
    r"(?P<jwt>eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)"
    r"|(?P<auth>(?i:bearer|basic))\s+[^\s,;\"']+"
    r"|(?P<otpauth>otpauth://\S+)"
    # An email: the first character and the domain stay, for a person to follow a case.
    r"|(?P<email>[A-Za-z0-9])[A-Za-z0-9._%+-]*@(?P<domain>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
    # A backup code as shown to users (xxxxx-xxxxx).
    rf"|(?P<backup>\b{_BACKUP_CHAR}{{5}}-{_BACKUP_CHAR}{{5}}\b)"
    # Opaque tokens (refresh, device, challenge: 43+ url-safe characters); UUIDs are shorter.
    r"|(?P<opaque>[A-Za-z0-9_-]{40,})"
    # A base32 TOTP secret.
    r"|(?P<base32>\b[A-Z2-7]{16,}\b)"
)


def _replace(match: re.Match[str]) -> str:
    kind = match.lastgroup
    if kind == "jwt":
        return "[jwt]"
    if kind == "auth":
        return f"{match['auth']} {REDACTED}"
    if kind == "otpauth":
        return "[otpauth-uri]"
    if kind == "domain":  # the email's last group
        return f"{match['email']}***@{match['domain']}"
    return REDACTED


def scrub(text: str) -> str:
    return _SECRETS.sub(_replace, text) if len(text) > 4 else text


@functools.lru_cache(maxsize=1024)
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
    for key, value in event.items():
        if key in _KEEP:
            continue
        if _is_secret_name(key):
            event[key] = REDACTED
        elif not isinstance(value, int | float | bool | None):
            event[key] = _redact_value(value)
    return event


# What every LogRecord has; the rest of its attributes are the call's `extra` fields.
_RECORD_ATTRS = frozenset(
    [*vars(logging.LogRecord("", 0, "", 0, "", (), None)), "message", "asctime", "taskName"]
)


def _timestamp(created: float) -> str:
    whole = int(created)
    micro = int((created - whole) * 1_000_000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(whole))}.{micro:06d}Z"


class Formatter(logging.Formatter):
    """Every record, ours, uvicorn's or a library's, as one event: timestamp, level, logger,
    message, request_id (of the request being answered), the call's `extra` fields and the
    exception; redacted, then rendered by structlog's JSON or console renderer.

    Written for the standard library's records directly rather than through structlog's
    ProcessorFormatter, which copies each record and runs a longer chain: the access line is
    written for every request (measured: 70 µs a line that way, a quarter of that this way).
    structlog's own loggers hand their event here as a record's `extra` (render_to_log_kwargs),
    so both kinds take the same path.
    """

    def __init__(self, log_format: LogFormat = "text") -> None:
        super().__init__()
        self._render: Any
        if log_format == "json":
            self._render = structlog.processors.JSONRenderer()
        else:
            self._render = structlog.dev.ConsoleRenderer(colors=False, event_key="message")

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid is not None:
            event["request_id"] = rid
        for key in record.__dict__.keys() - _RECORD_ATTRS:
            if key != "color_message":  # uvicorn's copy of the message with ANSI colours
                event.setdefault(key, record.__dict__[key])
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            event["stack"] = record.stack_info
        return str(self._render(None, "", redact(None, "", event)))


def _configure_structlog() -> None:
    """structlog's loggers (`structlog.get_logger`) write through the standard library, so
    their lines meet the same handler, level and formatter."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.render_to_log_kwargs,
        ],
        # Plain `logging.getLogger`: structlog's LoggerFactory would install its own Logger
        # class for every logger made afterwards, with a slower caller lookup.
        logger_factory=logging.getLogger,
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def formatter(log_format: LogFormat = "text") -> logging.Formatter:
    """The root handler's formatter (a dictConfig factory: `"()"`); configures structlog
    too, so a worker process that only applied the dictConfig logs the same way."""
    _configure_structlog()
    # What no line shows is not gathered for every record: the caller's file and line, the
    # thread, process and multiprocessing names (the logging docs' "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    return Formatter(log_format)


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
