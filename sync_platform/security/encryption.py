"""Field encryption at rest: authenticated, with key rotation built in.

**Cipher: AES-256-GCM-SIV** (``cryptography``'s ``AESGCMSIV``), one value at a time, in a token
``enc1:<key id>:<base64url(nonce | ciphertext | tag)>`` stored in a String column. Why not Fernet
(``MultiFernet``), the obvious choice:

- *volume*: every canonical build re-encrypts every sensitive value (4 per contact), so a busy
  deployment performs billions of encryptions under one key. Random 96-bit nonces in plain
  AES-GCM are only safe for about 2^32 messages per key; GCM-SIV is nonce-misuse resistant (a
  repeated nonce reveals at most that two values are equal), and Fernet's CBC+HMAC would be safe
  but is 2.5-4x slower (2 shared cores, 100k emails: Fernet 25 us per value, this 10 us, base64
  included; ``encrypt_frame`` does 100k contacts x 4 columns in about 1.6 s);
- *key id*: the token names its key, so decryption picks the key directly (MultiFernet tries them
  in turn) and :meth:`FieldCipher.rotate` skips values already under the newest key;
- *binding*: the column name is authenticated data, so a ciphertext moved into another column
  (an email pasted into the phone column) fails to decrypt instead of leaking through.

**Keys** (32 random bytes, urlsafe base64, :func:`generate_key`), newest first:
``SYNC_PLATFORM_FIELD_KEYS`` (comma-separated), else the dlt secret ``sync_platform.field_keys``
(``.dlt/secrets.toml`` or ``SYNC_PLATFORM__FIELD_KEYS``), else the local key file
``<data dir>/secrets/field_keys`` (one key a line). Only the embedded default may create that file
(mode 0600, under the git-ignored ``data/``); a production deployment without a configured key
fails instead of inventing one nobody else has. The newest key encrypts; every key decrypts.
Rotation: add a new key in front, run ``sync-platform keys rotate``, then drop the old key.

The **lookup key** (``SYNC_PLATFORM_LOOKUP_KEY``, ``sync_platform.lookup_key``,
``<data dir>/secrets/lookup_key``) keys :func:`lookup_hash`, the HMAC that lets erasure requests
be matched without storing an email. It is not rotated: the hashes already stored depend on it.

Keys never reach a log line, an exception message or a ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

from sync_platform.core.settings import FIELD_KEYS_ENV, LOOKUP_KEY_ENV, load_settings

log = logging.getLogger(__name__)

KEYS_ENV = FIELD_KEYS_ENV
KEYS_SECRET = "sync_platform.field_keys"
LOOKUP_KEY_SECRET = "sync_platform.lookup_key"
KEY_FILE, LOOKUP_KEY_FILE = "field_keys", "lookup_key"
PREFIX = "enc1"
_NONCE = 12


class EncryptionError(RuntimeError):
    """A key or ciphertext problem; the message names no key and no plaintext."""


class MissingKeyError(EncryptionError):
    """No key is configured where one is needed (decryption never invents a key)."""


class UndecryptableError(EncryptionError):
    """A ciphertext that no configured key opens: wrong or dropped key, or tampered data."""


def generate_key() -> str:
    """A new random 256-bit key, urlsafe base64 (the format of every key source)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def key_id(key: bytes) -> str:
    """A short public name for a key (a hash of it: reveals nothing about the key)."""
    return hashlib.sha256(b"sync_platform field key id\0" + key).hexdigest()[:8]


def _decode_key(text: str, where: str, position: int) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip().encode())
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise EncryptionError(
            f"{where}: key #{position + 1} is not 32 bytes of urlsafe base64 "
            "(make one with `sync-platform keys generate`)"
        )
    return key


class FieldCipher:
    """Encrypts with the newest key, decrypts with any; values are ``str``, tokens are ``str``."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise MissingKeyError("no field-encryption key given")
        self._ciphers = {key_id(k): AESGCMSIV(k) for k in keys}
        if len(self._ciphers) != len(keys):
            raise EncryptionError("the same field-encryption key is listed twice")
        self.key_ids = tuple(self._ciphers)
        self.current = self.key_ids[0]

    @classmethod
    def from_strings(cls, keys: Iterable[str], where: str = "field keys") -> FieldCipher:
        return cls([_decode_key(k, where, i) for i, k in enumerate(keys)])

    def __repr__(self) -> str:
        return f"FieldCipher(keys={list(self.key_ids)})"

    def encrypt(self, value: str, column: str) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._ciphers[self.current].encrypt(nonce, value.encode(), column.encode())
        return f"{PREFIX}:{self.current}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, column: str) -> str:
        kid, blob = self._parse(token, column)
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise UndecryptableError(
                f"{column}: encrypted under key {kid}, which is not among the configured "
                f"keys {list(self.key_ids)} (dropped too early, or the wrong key set)"
            )
        try:
            return cipher.decrypt(blob[:_NONCE], blob[_NONCE:], column.encode()).decode()
        except InvalidTag:
            raise UndecryptableError(
                f"{column}: a value under key {kid} failed authentication "
                "(tampered, truncated, or moved from another column)"
            ) from None

    def rotate(self, token: str, column: str) -> str:
        """The token under the newest key (unchanged if it already is)."""
        kid, _ = self._parse(token, column)
        return token if kid == self.current else self.encrypt(self.decrypt(token, column), column)

    @staticmethod
    def _parse(token: str, column: str) -> tuple[str, bytes]:
        prefix, _, rest = token.partition(":")
        kid, _, body = rest.partition(":")
        if prefix != PREFIX or not kid or not body:
            raise UndecryptableError(f"{column}: not an encrypted value (expected '{PREFIX}:<key id>:...')")
        try:
            return kid, base64.urlsafe_b64decode(body.encode())
        except (binascii.Error, ValueError):
            raise UndecryptableError(f"{column}: corrupt ciphertext encoding") from None


def is_encrypted(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX + ":")


# ---------------------------------------------------------------------------- frames
def _map_column(frame: pl.DataFrame, columns: Iterable[str], fn) -> pl.DataFrame:
    present = [c for c in columns if c in frame.columns]
    return frame.with_columns(
        pl.Series(
            c, [None if v is None else fn(v, c) for v in frame[c].cast(pl.String).to_list()], dtype=pl.String
        )
        for c in present
    )


def encrypt_frame(frame: pl.DataFrame, columns: Iterable[str], cipher: FieldCipher) -> pl.DataFrame:
    """``columns`` (those present) replaced by ciphertext; nulls stay null."""
    return _map_column(frame, columns, cipher.encrypt)


def decrypt_frame(
    frame: pl.DataFrame, columns: Iterable[str], cipher: FieldCipher | None = None
) -> pl.DataFrame:
    """The authorized read path: ``columns`` back in clear. Without ``cipher``, the configured keys
    (never a new one): raises :class:`MissingKeyError` or :class:`UndecryptableError`."""
    present = [c for c in columns if c in frame.columns]
    if cipher is None and all(frame[c].null_count() == frame.height for c in present):
        return frame  # no value to read (e.g. a fresh install before its first key): no key needed
    return _map_column(frame, present, (cipher or field_cipher()).decrypt)


def rotate_frame(frame: pl.DataFrame, columns: Iterable[str], cipher: FieldCipher) -> pl.DataFrame:
    return _map_column(frame, columns, cipher.rotate)


# ---------------------------------------------------------------------------- keys
def _secrets_dir() -> Path:
    return load_settings().data_dir / "secrets"


def _configured(env: str, value: str | None, secret: str) -> tuple[list[str], str] | None:
    if value:
        return [k for k in value.split(",") if k.strip()], env
    import dlt

    value = dlt.secrets.get(secret)
    if value:
        keys = value if isinstance(value, list) else str(value).split(",")
        return [str(k) for k in keys if str(k).strip()], f"dlt secret {secret}"
    return None


def _local_keys(name: str, create: bool) -> tuple[list[str], str] | None:
    path = _secrets_dir() / name
    if not path.exists():
        if not create:
            return None
        _create_key_file(path)
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return lines, f"key file secrets/{name}"


def _create_key_file(path: Path) -> None:
    """Write a new key to ``path`` unless another process got there first.

    The key is written to a private temporary file and hard-linked into place: the link appears
    with its content or not at all, so a process that loses the race never reads a half-written
    (empty) file, and every process ends up with the one key that won.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(generate_key() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.link(scratch, path)
    except FileExistsError:  # another process won the race: use its key
        return
    finally:
        os.unlink(scratch)
    log.warning(
        "created the local key file secrets/%s under the data directory: back it up, "
        "without it the encrypted values cannot be read or matched",
        path.name,
    )


def _embedded_default() -> bool:
    return load_settings().embedded


def field_cipher(create_if_missing: bool = False) -> FieldCipher:
    """The configured field keys as a cipher. ``create_if_missing`` makes a local key file, and only
    for the embedded (DuckDB) default; the decrypt path never passes it."""
    found = _configured(KEYS_ENV, load_settings().field_keys, KEYS_SECRET) or _local_keys(
        KEY_FILE, create_if_missing and _embedded_default()
    )
    if not found or not found[0]:
        raise MissingKeyError(
            f"no field-encryption key: set {KEYS_ENV} (comma-separated, newest first) or the dlt "
            f"secret {KEYS_SECRET}; the embedded default keeps one in <data dir>/secrets/{KEY_FILE}"
        )
    keys, where = found
    return FieldCipher.from_strings(keys, where)


def lookup_key(create_if_missing: bool = False) -> bytes:
    found = _configured(LOOKUP_KEY_ENV, load_settings().lookup_key, LOOKUP_KEY_SECRET) or _local_keys(
        LOOKUP_KEY_FILE, create_if_missing and _embedded_default()
    )
    if not found or not found[0]:
        raise MissingKeyError(
            f"no lookup key: set {LOOKUP_KEY_ENV} or the dlt secret {LOOKUP_KEY_SECRET}; the "
            f"embedded default keeps one in <data dir>/secrets/{LOOKUP_KEY_FILE}"
        )
    keys, where = found
    return _decode_key(keys[0], where, 0)


def lookup_hash(value: str, key: bytes) -> str:
    """A keyed hash (HMAC-SHA256) of a normalized value: matchable, but not reversible by guessing
    emails without the key."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
