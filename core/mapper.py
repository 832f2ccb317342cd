"""The record mapper: compresses, then encrypts, encoded records and snapshots, and frames them.

The frame
---------
A framed record is ``0xC1, flags, body``. ``0xC1`` is the one byte msgpack never uses
and that valid UTF-8 (hence JSON) never holds, so no record of the built-in codecs starts
with it: records written before compression or a cipher was turned on are read as they
are, and a store without either still reads compressed records. ``flags`` bits 0-1 name
the compression of the body (0 none: the record did not shrink, or is shorter than
``MIN_COMPRESSIBLE``; 1 zlib; 2 zstd), bit 4
says the body is encrypted; other bits are reserved and refused. An encrypted body is the
cipher's output (for ``AesGcmCipher``: key id, nonce, ciphertext and tag), sealed with
associated data ``frame header + kind + sequence (8 bytes, big-endian) + aggregate key``,
kind ``e`` for an event record and ``s`` for a snapshot: a record moved to another
aggregate, sequence or kind, or whose flags were changed, fails to decrypt.

A custom codec whose output may start with ``0xC1`` cannot be combined with a mapper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

from kvsourcing.compression import Compressor, compressor, compressor_for_flag
from kvsourcing.errors import ConfigurationError, EncodingError

FRAME: Final = 0xC1
_FRAME_BYTE: Final = b"\xc1"
_COMPRESSION_BITS: Final = 0x03
_ENCRYPTED: Final = 0x10
MIN_COMPRESSIBLE: Final = 128
"""Records shorter than this are stored uncompressed without trying: on a realistic event
mix (bench/compression_bench.py) 2 in 2 000 of them shrank, by 5 bytes each, while trying
costs a few microseconds per record."""
EVENT: Final = b"e"
SNAPSHOT: Final = b"s"


class Cipher(Protocol):
    """What the mapper needs of a cipher (``kvsourcing.crypto.AesGcmCipher`` is one)."""

    allow_plaintext: bool

    def encrypt(self, plaintext: bytes, associated: bytes) -> bytes: ...

    def decrypt(self, sealed: bytes, associated: bytes) -> bytes: ...

    def is_current(self, sealed: bytes) -> bool: ...


def _associated(header: bytes, kind: bytes, key: str, sequence: int) -> bytes:
    return header + kind + sequence.to_bytes(8, "big") + key.encode("utf-8", "surrogatepass")


class Mapper:
    """Turns a codec's bytes into stored bytes and back, for one store's options."""

    def __init__(self, compression: str | None = None, cipher: Cipher | None = None) -> None:
        if cipher is not None and not all(
            callable(getattr(cipher, name, None)) for name in ("encrypt", "decrypt", "is_current")
        ):
            raise ConfigurationError(
                f"cipher must be a kvsourcing.crypto.AesGcmCipher (or have its methods), not {cipher!r}"
            )
        self._compressor: Compressor | None = compressor(compression)
        self.cipher = cipher
        self.active = self._compressor is not None or cipher is not None
        """Whether records are written framed (compressed or encrypted)."""

    def wrap(self, key: str, sequence: int, kind: bytes, data: bytes) -> bytes:
        """``data`` as stored: compressed when that makes it smaller, then encrypted (unchanged
        when the mapper is not ``active``)."""
        if not self.active:
            return data
        flags = 0
        if self._compressor is not None and len(data) >= MIN_COMPRESSIBLE:
            packed = self._compressor.compress(data)
            if len(packed) < len(data):
                data, flags = packed, self._compressor.flag
        if self.cipher is None:
            return bytes((FRAME, flags)) + data
        header = bytes((FRAME, flags | _ENCRYPTED))
        return header + self.cipher.encrypt(data, _associated(header, kind, key, sequence))

    def wrap_records(self, key: str, first: int, records: Sequence[bytes]) -> list[bytes]:
        """Event records ``first, first+1, ...`` of ``key`` as stored."""
        return [self.wrap(key, sequence, EVENT, record) for sequence, record in enumerate(records, first)]

    def unwrap(self, key: str, sequence: int, kind: bytes, blob: bytes) -> bytes:
        """The codec's bytes of a stored record (framed or not); ``EncodingError`` if it
        fails authentication, names an unknown key or is refused as plaintext."""
        if blob[:1] != _FRAME_BYTE:
            self._check_plaintext()
            return blob
        if len(blob) < 2 or blob[1] & ~(_COMPRESSION_BITS | _ENCRYPTED):
            raise EncodingError("the record's frame is corrupt, or from a newer kvsourcing")
        flags = blob[1]
        body = blob[2:]
        if flags & _ENCRYPTED:
            if self.cipher is None:
                raise EncodingError(
                    "the record is encrypted; open the store with "
                    "cipher=kvsourcing.crypto.AesGcmCipher(key) or set KVSOURCING_CIPHER_KEY"
                )
            body = self.cipher.decrypt(body, _associated(blob[:2], kind, key, sequence))
        else:
            self._check_plaintext()
        compression = flags & _COMPRESSION_BITS
        if compression:
            return compressor_for_flag(compression).decompress(body)
        return body

    def _check_plaintext(self) -> None:
        if self.cipher is not None and not self.cipher.allow_plaintext:
            raise EncodingError(
                "the record is not encrypted, and the cipher was made with allow_plaintext=False"
            )

    def unwrap_records(self, key: str, first: int, records: Sequence[bytes]) -> list[bytes]:
        """The codec's bytes of event records ``first, first+1, ...`` of ``key``; an error names
        the record."""
        unwrapped = []
        for sequence, record in enumerate(records, first):
            try:
                unwrapped.append(self.unwrap(key, sequence, EVENT, record))
            except EncodingError as exc:
                raise EncodingError(f"cannot read {key!r} at sequence {sequence}: {exc}") from None
        return unwrapped

    def is_current(self, blob: bytes) -> bool:
        """Whether a stored record is framed as this mapper writes it: encrypted under the
        newest key when there is a cipher, framed when compression is on (re-encryption skips those)."""
        if self.cipher is not None:
            return (
                blob[:1] == _FRAME_BYTE
                and len(blob) > 2
                and blob[1] & _ENCRYPTED != 0
                and (self.cipher.is_current(blob[2:]))
            )
        return blob[:1] == _FRAME_BYTE or not self.active


PLAIN: Final = Mapper()
"""The mapper of a store with neither compression nor cipher: it still reads compressed records."""
