"""Encryption at rest for secrets the app must read back (sites' secret keys).

A site's secret key is the HMAC key for `user_hash`, so it cannot be stored as a
one-way hash. It is stored twice instead:

- encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`), to use it;
- as a keyed digest (HMAC-SHA256), to find the site behind a key without
  decrypting every row.

Both keys are derived from the `FIELD_ENCRYPTION_KEY` setting, a comma-separated
list whose first entry encrypts and whose every entry decrypts and matches
digests (MultiFernet), so the key can be rotated: put the new key first, keep the
old one after it, run `manage.py reencrypt_keys`, then drop the old one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

__all__ = ["InvalidToken", "decrypt", "digest", "digests", "encrypt"]


def _derive(secret: str, purpose: bytes) -> bytes:
    # Separate keys per purpose, so the digest key never doubles as the cipher key.
    return hmac.new(secret.encode(), b"reengage:" + purpose, hashlib.sha256).digest()


@cache
def _keys(configured: tuple[str, ...]) -> tuple[MultiFernet, tuple[bytes, ...]]:
    fernet = MultiFernet(
        [Fernet(base64.urlsafe_b64encode(_derive(k, b"fernet"))) for k in configured]
    )
    return fernet, tuple(_derive(k, b"digest") for k in configured)


def _configured() -> tuple[MultiFernet, tuple[bytes, ...]]:
    return _keys(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return _configured()[0].encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """Raises `InvalidToken` when no configured key decrypts it."""
    return _configured()[0].decrypt(token.encode()).decode()


def digest(plaintext: str) -> str:
    """The lookup digest under the current key."""
    return digests(plaintext)[0]


def digests(plaintext: str) -> list[str]:
    """The lookup digest under every configured key, current first: a lookup
    matches rows written before a key rotation until they are re-encrypted."""
    message = plaintext.encode()
    return [hmac.new(k, message, hashlib.sha256).hexdigest() for k in _configured()[1]]
