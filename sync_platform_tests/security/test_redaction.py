import io
import logging

import pytest

from sync_platform.security.redaction import mask_value, redact_text


@pytest.mark.parametrize(
    "text, secret",
    [
        ("mail from Ada.Lovelace@example.com failed", "Ada.Lovelace@example.com"),
        ("call +1 415 555 0123 now", "415 555 0123"),
        ("call (415) 555-0123 now", "555-0123"),
        ("uk +44 20 7946 0958", "7946 0958"),
    ],
)
def test_free_text_loses_emails_and_phones(text, secret):
    assert secret not in redact_text(text)


def test_masked_values_keep_a_hint_but_not_the_value():
    assert mask_value("email", "ada@example.com") == "a***@e***.com"
    assert mask_value("phone", "+14155550123") == "***23"
    assert mask_value("last_name", "Lovelace") == "L***"
    assert mask_value("status", "Closed") == "Closed"


def test_every_log_record_is_redacted_including_arguments_and_exceptions():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    logger = logging.getLogger("some.library.logger")  # not ours, attached after the package import
    logger.addHandler(handler)
    try:
        logger.warning("rejected %s with phone %s", "grace.hopper@navy.mil", "+1 202 555 0147")
        try:
            raise ValueError("bad email ada@example.com")
        except ValueError:
            logger.exception("while mapping")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "rejected" in out and "while mapping" in out and "ValueError" in out
    for secret in ("grace.hopper@navy.mil", "202 555 0147", "ada@example.com"):
        assert secret not in out
