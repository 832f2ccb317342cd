"""``AesGcmCipher``: encryption at rest of event records and snapshots (the ``crypto`` extra).

AES-GCM with a random 96-bit nonce per record. The caller (``kvsourcing.mapper``) passes
associated data naming the record's aggregate key, sequence and kind, so a record copied
to another aggregate, position or from a snapshot to an event fails to decrypt. Each
ciphertext carries the 4-byte id of the key that sealed it: the newest key encrypts, and
older keys still decrypt, so keys can be rotated without rewriting the store at once.
See SECURITY.md for what this protects and what it does not.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from typing import Final

from kvsourcing.errors import ConfigurationError, EncodingError

KEY_ID_SIZE: Final = 4
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
KEY_ENVIRONMENT_VARIABLE: Final = "KVSOURCING_CIPHER_KEY"


def key_id(key: bytes) -> bytes:
    """A key's public 4-byte id: the start of a domain-separated SHA-256 of it."""
    return hashlib.sha256(b"kvsourcing key id\0" + key).digest()[:KEY_ID_SIZE]


class AesGcmCipher:
    """Seals with ``key`` (16, 24 or 32 bytes); opens with it or any of ``older_keys``.

    ``allow_plaintext=False`` refuses records stored without encryption (once every stream
    was re-encrypted), so that someone who can write to the backend cannot slip in
    unencrypted events.
    """

    def __init__(self, key: bytes, *older_keys: bytes, allow_plaintext: bool = True) -> None:
        try:
            from cryptography.exceptions import InvalidTag
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:
            raise ConfigurationError(
                "AesGcmCipher needs the cryptography package: pip install 'kvsourcing[crypto]'"
            ) from None
        self._invalid_tag = InvalidTag
        self._keys: dict[bytes, AESGCM] = {}
        for index, candidate in enumerate((key, *older_keys)):
            if not isinstance(candidate, bytes | bytearray) or len(candidate) not in (16, 24, 32):
                size = (
                    len(candidate) if isinstance(candidate, bytes | bytearray) else type(candidate).__name__
                )
                raise ValueError(f"AES key #{index} must be 16, 24 or 32 bytes, not {size}")
            self._keys.setdefault(key_id(bytes(candidate)), AESGCM(bytes(candidate)))
        self.current_key_id = key_id(bytes(key))
        self.allow_plaintext = allow_plaintext

    def __repr__(self) -> str:
        ids = ", ".join(k.hex() for k in self._keys)
        return f"AesGcmCipher(key ids {ids})"

    def encrypt(self, plaintext: bytes, associated: bytes) -> bytes:
        """``key id + nonce + ciphertext and tag`` of ``plaintext`` under the newest key."""
        nonce = os.urandom(NONCE_SIZE)
        sealed = self._keys[self.current_key_id].encrypt(nonce, plaintext, self.current_key_id + associated)
        return self.current_key_id + nonce + sealed

    def decrypt(self, sealed: bytes, associated: bytes) -> bytes:
        """The plaintext of ``encrypt``'s output; ``EncodingError`` if anything does not match."""
        if len(sealed) < KEY_ID_SIZE + NONCE_SIZE + TAG_SIZE:
            raise EncodingError("encrypted record is truncated")
        ident = sealed[:KEY_ID_SIZE]
        aead = self._keys.get(ident)
        if aead is None:
            raise EncodingError(
                f"record is encrypted under key id {ident.hex()}, which this cipher does not hold "
                "(pass the older key to AesGcmCipher as a further argument)"
            )
        nonce = sealed[KEY_ID_SIZE : KEY_ID_SIZE + NONCE_SIZE]
        try:
            return aead.decrypt(nonce, sealed[KEY_ID_SIZE + NONCE_SIZE :], ident + associated)
        except self._invalid_tag:
            raise EncodingError(
                "encrypted record fails authentication: it was tampered with, or moved from "
                "another aggregate, sequence or kind"
            ) from None

    def is_current(self, sealed: bytes) -> bool:
        """Whether ``sealed`` (``encrypt``'s output) is under the newest key."""
        return sealed[:KEY_ID_SIZE] == self.current_key_id


def cipher_from_environment(environ: dict[str, str] | None = None) -> AesGcmCipher | None:
    """The cipher ``KVSOURCING_CIPHER_KEY`` names: base64 keys separated by commas, newest
    first (older ones decrypt only); ``None`` when the variable is unset or empty."""
    text = (os.environ if environ is None else environ).get(KEY_ENVIRONMENT_VARIABLE, "").strip()
    if not text:
        return None
    keys = []
    for index, part in enumerate(text.split(",")):
        try:
            keys.append(base64.b64decode(part.strip(), validate=True))
        except (binascii.Error, ValueError):
            raise ConfigurationError(
                f"{KEY_ENVIRONMENT_VARIABLE} key #{index} is not valid base64; "
                "generate one with: "
                "python -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())'"
            ) from None
    try:
        return AesGcmCipher(*keys)
    except ValueError as exc:
        raise ConfigurationError(f"{KEY_ENVIRONMENT_VARIABLE}: {exc}") from None
