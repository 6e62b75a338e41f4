"""Structured logs: one JSON object per line, with the ids a record carries, never a secret.

:class:`JsonFormatter` writes ``{"ts", "level", "logger", "message"}`` plus ``vm_id``,
``host_id``, ``incident_id`` and ``recommendation_id`` when the call passed them
(``log.info("incident opened", extra={"vm_id": ..., "incident_id": ...})``) and ``exc`` for
an exception. :class:`RedactSecrets` replaces the value of every secret setting (the state
signing key, SASL password, ...) with ``***`` wherever it would appear in a message.

>>> import logging
>>> record = logging.makeLogRecord({"msg": "key is %s", "args": ("s3cret",), "levelname":
...                                 "INFO", "name": "x", "vm_id": "vm-1", "created": 0.0,
...                                 "msecs": 0.0})
>>> RedactSecrets(["s3cret"]).filter(record)
True
>>> print(JsonFormatter().format(record))  # doctest: +ELLIPSIS
{"ts":"1970-01-01T00:00:00.000Z","level":"INFO","logger":"x","message":"key is ***","vm_id":...}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import orjson

#: Attributes copied from a log record into its JSON line when present.
CONTEXT_FIELDS = ("vm_id", "host_id", "incident_id", "recommendation_id", "metric")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, Any] = {"ts": f"{ts}.{int(record.msecs):03d}Z",
                               "level": record.levelname, "logger": record.name,
                               "message": record.getMessage()}
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class RedactSecrets(logging.Filter):
    """Replace secret values in a record's message (formatted once, then frozen)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            if any(s in message for s in self.secrets):
                for s in self.secrets:
                    message = message.replace(s, "***")
                record.msg, record.args = message, None
        return True


def logging_config(level: str, fmt: str, secrets: Iterable[str]) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for a process: JSON or text lines on stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactSecrets, "secrets": list(secrets)}},
        "formatters": {
            "json": {"()": JsonFormatter},
            "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        },
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "formatter": fmt, "filters": ["redact"]}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {"aiokafka": {"level": "WARNING"}},
    }
