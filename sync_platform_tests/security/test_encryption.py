"""Field encryption: round trip, tamper detection, rotation, and keys that are missing or wrong."""

from __future__ import annotations

import io
import logging
import stat
from pathlib import Path

import polars as pl
import pytest

from sync_platform.security.encryption import (
    KEYS_ENV,
    FieldCipher,
    MissingKeyError,
    UndecryptableError,
    decrypt_frame,
    encrypt_frame,
    field_cipher,
    generate_key,
    is_encrypted,
    rotate_frame,
)

PHONES = pl.DataFrame({"source_id": ["a", "b", "c"], "phone": ["+14155550123", None, "+442071838750"]})


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SYNC_PLATFORM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv(KEYS_ENV, raising=False)
    monkeypatch.delenv("SYNC_PLATFORM_WAREHOUSE", raising=False)
    return tmp_path / "data"


def test_round_trip_keeps_nulls_and_hides_the_values() -> None:
    cipher = FieldCipher.from_strings([generate_key()])
    encrypted = encrypt_frame(PHONES, ["phone"], cipher)
    values = encrypted["phone"].to_list()
    assert values[1] is None and all(is_encrypted(v) for v in (values[0], values[2]))
    assert (
        "4155550123" not in values[0] and values[0] != encrypt_frame(PHONES, ["phone"], cipher)["phone"][0]
    ), "a fresh nonce per value: equal values do not give equal ciphertexts"
    assert decrypt_frame(encrypted, ["phone"], cipher).equals(PHONES)
    assert encrypted["source_id"].equals(PHONES["source_id"]), "other columns untouched"


def test_tampering_and_moving_a_value_to_another_column_are_detected() -> None:
    cipher = FieldCipher.from_strings([generate_key()])
    token = cipher.encrypt("+14155550123", "phone")
    flipped = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    with pytest.raises(UndecryptableError, match="failed authentication"):
        cipher.decrypt(flipped, "phone")
    with pytest.raises(UndecryptableError, match="failed authentication"):
        cipher.decrypt(token, "email")
    with pytest.raises(UndecryptableError, match="not an encrypted value"):
        cipher.decrypt("+14155550123", "phone")


def test_rotation_add_a_key_rotate_then_drop_the_old_one() -> None:
    old, new = generate_key(), generate_key()
    before = encrypt_frame(PHONES, ["phone"], FieldCipher.from_strings([old]))
    both = FieldCipher.from_strings([new, old])  # step 1: the new key goes first
    assert decrypt_frame(before, ["phone"], both).equals(PHONES), "old ciphertext still readable"
    rotated = rotate_frame(before, ["phone"], both)  # step 2: `sync-platform keys rotate`
    assert rotated["phone"][0] != before["phone"][0]
    assert rotate_frame(rotated, ["phone"], both)["phone"].equals(rotated["phone"]), (
        "already current: untouched"
    )
    only_new = FieldCipher.from_strings([new])  # step 3: drop the old key
    assert decrypt_frame(rotated, ["phone"], only_new).equals(PHONES)
    with pytest.raises(UndecryptableError, match="not among the configured keys"):
        decrypt_frame(before, ["phone"], only_new)


def test_keys_come_from_the_environment_newest_first(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = generate_key(), generate_key()
    token = FieldCipher.from_strings([old]).encrypt("x@example.org", "email")
    monkeypatch.setenv(KEYS_ENV, f"{new}, {old}")
    cipher = field_cipher()
    assert cipher.decrypt(token, "email") == "x@example.org"
    assert cipher.current == FieldCipher.from_strings([new]).current
    assert not (isolated / "secrets").exists(), "a configured key never creates a local one"
    monkeypatch.setenv(KEYS_ENV, "not-a-key")
    with pytest.raises(Exception, match=f"{KEYS_ENV}: key #1 is not 32 bytes") as err:
        field_cipher()
    assert "not-a-key" not in str(err.value), "a key never appears in a message"


def test_no_key_is_a_clear_error_and_only_the_embedded_default_creates_one(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(MissingKeyError, match=KEYS_ENV):
        field_cipher()
    with pytest.raises(MissingKeyError):
        decrypt_frame(PHONES, ["phone"])
    monkeypatch.setenv("SYNC_PLATFORM_WAREHOUSE", "postgres")
    with pytest.raises(MissingKeyError):
        field_cipher(create_if_missing=True)
    monkeypatch.delenv("SYNC_PLATFORM_WAREHOUSE")
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    logger = logging.getLogger("sync_platform.security.encryption")
    logger.addHandler(handler)
    try:
        created = field_cipher(create_if_missing=True)
    finally:
        logger.removeHandler(handler)
    key_file = isolated / "secrets" / "field_keys"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert (
        "created the local key file secrets/field_keys" in captured.getvalue()
        and key not in captured.getvalue()
    )
    assert key not in repr(created)
    assert field_cipher().current == created.current, "later reads use the same file"


def test_two_steps_creating_the_key_file_at_once_share_one_key_and_none_reads_it_empty(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parallel step processes of a fresh install create the key file together. The first one is
    held while it makes its key; the second must not see an empty file (it once raised
    MissingKeyError and failed a "Materialize all" step), and both must end with the same key."""
    import threading

    from sync_platform.security import encryption

    first_is_writing, second_is_done = threading.Event(), threading.Event()
    real_generate = encryption.generate_key
    calls = []

    def generate() -> str:
        calls.append(1)
        if len(calls) == 1:  # the first creator, caught between creating its file and its key
            first_is_writing.set()
            assert second_is_done.wait(30), "the second creator never finished"
        return real_generate()

    monkeypatch.setattr(encryption, "generate_key", generate)
    results: dict[str, object] = {}

    def first() -> None:
        try:
            results["first"] = field_cipher(create_if_missing=True).current
        except Exception as exc:  # noqa: BLE001 - reported below
            results["first"] = exc

    thread = threading.Thread(target=first)
    thread.start()
    assert first_is_writing.wait(30)
    try:
        results["second"] = field_cipher(create_if_missing=True).current
    finally:
        second_is_done.set()
        thread.join(30)
    assert not isinstance(results["first"], Exception), results["first"]
    assert results["first"] == results["second"] == field_cipher().current
    assert [p.name for p in (isolated / "secrets").iterdir()] == ["field_keys"], "no scratch file left"


def test_a_frame_with_nothing_to_decrypt_needs_no_key(isolated: Path) -> None:
    """A fresh install's table whose protected columns are all null reads without a key; a value
    that is there still needs one."""
    empty = PHONES.with_columns(pl.lit(None, pl.String).alias("phone"))
    assert decrypt_frame(empty, ["phone", "absent"]).equals(empty)
    with pytest.raises(MissingKeyError):
        decrypt_frame(PHONES, ["phone"])
