"""Compressors for stored records: ``zlib`` (standard library) and ``zstd`` (the ``zstd`` extra).

A compressor only turns bytes into fewer bytes and back; ``kvsourcing.mapper`` decides
when to use it (never when the result would not be smaller) and frames the result.
Decompression is bounded, so a record crafted to expand enormously fails with
``EncodingError`` instead of exhausting memory.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable
from typing import Any, Final, Protocol

from kvsourcing.errors import ConfigurationError, EncodingError

MAX_EXPANDED: Final = 64 * 1024 * 1024
"""The largest record a compressed record may expand to (64 MiB, far above any backend's item size)."""


class Compressor(Protocol):
    """Compresses a record and gives the original back; ``name`` is what ``compression=`` takes."""

    name: str
    flag: int

    def compress(self, data: bytes) -> bytes: ...

    def decompress(self, data: bytes) -> bytes: ...


class ZlibCompressor:
    """zlib (deflate with an Adler-32 check) at level 6: in the standard library everywhere.

    The window and the memory level are sized to the record: deflate's default state (over
    256 KiB, set up for every record) costs a small record three times what compressing it does.
    """

    name = "zlib"
    flag = 1

    def compress(self, data: bytes) -> bytes:
        window = min(15, max(9, (len(data) - 1).bit_length()))
        deflater = zlib.compressobj(6, zlib.DEFLATED, window, max(1, window - 7))
        return deflater.compress(data) + deflater.flush()

    def decompress(self, data: bytes) -> bytes:
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(data, MAX_EXPANDED)
        except zlib.error as exc:
            raise EncodingError(f"stored record is not valid zlib data: {exc}") from exc
        if inflater.unconsumed_tail:
            raise EncodingError(f"stored record expands past {MAX_EXPANDED} bytes; refusing it")
        if not inflater.eof or inflater.unused_data:
            raise EncodingError("stored record is truncated or corrupt zlib data")
        return out


class ZstdCompressor:
    """Zstandard at level 3: faster than zlib, and usually smaller (``pip install 'kvsourcing[zstd]'``).

    zstandard's (de)compressor objects must not be used by two threads at once, and a store
    serves many: each thread gets its own pair.
    """

    name = "zstd"
    flag = 2

    def __init__(self) -> None:
        try:
            import zstandard
        except ImportError:
            raise ConfigurationError(
                "compression='zstd' needs the zstandard package: pip install 'kvsourcing[zstd]'"
            ) from None
        self._zstd: Any = zstandard
        self._local = threading.local()

    def _pair(self) -> Any:
        pair = getattr(self._local, "pair", None)
        if pair is None:
            pair = self._local.pair = (self._zstd.ZstdCompressor(level=3), self._zstd.ZstdDecompressor())
        return pair

    def compress(self, data: bytes) -> bytes:
        return bytes(self._pair()[0].compress(data))

    def decompress(self, data: bytes) -> bytes:
        try:
            return bytes(self._pair()[1].decompress(data, max_output_size=MAX_EXPANDED))
        except self._zstd.ZstdError as exc:
            raise EncodingError(f"stored record is not valid zstd data (or expands too far): {exc}") from exc


_FACTORIES: dict[str, Callable[[], Compressor]] = {"zlib": ZlibCompressor, "zstd": ZstdCompressor}
_FLAGS: dict[int, Callable[[], Compressor]] = {
    ZlibCompressor.flag: ZlibCompressor,
    ZstdCompressor.flag: ZstdCompressor,
}
_BY_FLAG: dict[int, Compressor] = {}


def compressor(name: str | None) -> Compressor | None:
    """The compressor that ``compression=name`` names (``None``: no compression)."""
    if name is None:
        return None
    factory = _FACTORIES.get(name) if isinstance(name, str) else None
    if factory is None:
        raise ConfigurationError(f"unknown compression {name!r}: use None, 'zlib' or 'zstd'")
    return factory()


def compressor_for_flag(flag: int) -> Compressor:
    """The compressor that wrote a record framed with ``flag`` (any store can read any)."""
    found = _BY_FLAG.get(flag)
    if found is None:
        factory = _FLAGS.get(flag)
        if factory is None:
            raise EncodingError(
                f"stored record uses compression #{flag}, which this kvsourcing does not know; "
                "upgrade kvsourcing to read it"
            )
        found = _BY_FLAG[flag] = factory()
    return found
