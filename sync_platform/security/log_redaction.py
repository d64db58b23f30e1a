"""Redact emails and phone numbers from every log record the process creates.

Installed through the log-record factory rather than on handlers: a handler filter misses
records of loggers whose handlers were attached later (Dagster creates its own per run), while
the factory sees every record of every logger, message arguments and exception text included.
``SYNC_PLATFORM_REDACT_LOGS=0`` turns it off (e.g. to debug the sandbox locally).
"""

from __future__ import annotations

import logging
import traceback

from sync_platform.core.settings import load_settings
from sync_platform.security.redaction import redact_text

_installed = False


def install_log_redaction() -> None:
    """Wrap the current log-record factory once; idempotent."""
    global _installed
    if _installed or not load_settings().redact_logs:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed format string: leave it to logging's own error path
            return record
        record.msg, record.args = redact_text(message), ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact_text("".join(traceback.format_exception(*record.exc_info)).rstrip())
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
