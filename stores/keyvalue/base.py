"""``DriverBase``: the checks and chores every key-value driver shares, written once.

A driver subclasses it and supplies its primitives (``append_many``, ``load``, and for a
feed ``read_feed``/``trim_feed`` and the value store). The base gives it the single-commit
``append``, argument and option checks that raise the same exceptions on every backend,
the context manager (``ClosesOnExit``), closing a client the driver owns, and ``served()``
(with ``reraise``, which hot paths call from their own ``except``): the one place where a
driver's client errors are translated, through the driver's ``translate`` hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, NoReturn, Self
from urllib.parse import parse_qsl

from kvsourcing.closing import ClosesOnExit
from kvsourcing.config import redact_url
from kvsourcing.errors import ConfigurationError, EncodingError, KvSourcingError
from kvsourcing.stores.keyvalue.records import Commit, Refusal

STORE_OPTIONS = frozenset({"snapshot_interval", "codec", "feed", "compression", "cipher"})
"""The options every store takes (``open_store`` and each driver's ``new_store``)."""


def validate_buckets(buckets: object, backend: str) -> int:
    """``buckets`` if it is a usable bucket count (an ``int`` >= 1), else ``ConfigurationError``."""
    if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
        raise ConfigurationError(f"{backend} store option buckets must be an int >= 1, not {buckets!r}")
    return buckets


def check_options(backend: str, options: Mapping[str, Any], own: Iterable[str]) -> None:
    """Refuse options that neither every store nor this backend (``own``) takes."""
    allowed = STORE_OPTIONS | set(own)
    unknown = set(options) - allowed
    if unknown:
        raise ConfigurationError(
            f"{backend} store does not take option(s) {', '.join(sorted(unknown))}; "
            f"it takes {', '.join(sorted(allowed))}"
        )


def _flag(text: str) -> bool:
    if text.lower() not in _FLAGS:
        raise ValueError(f"expected true or false, not {text!r}")
    return _FLAGS[text.lower()]


_FLAGS = {"true": True, "1": True, "false": False, "0": False}

QUERY_OPTIONS: dict[str, Callable[[str], Any]] = {"snapshot_interval": int, "feed": _flag, "compression": str}
"""How every store's options are read from a URL's query string (``?feed=false``)."""


def query_options(url: str, query: str, own: Mapping[str, Callable[[str], Any]]) -> dict[str, Any]:
    """The store options in a URL's ``query``: those every store takes and the backend's
    ``own`` (name to converter); ``ConfigurationError`` for a repeated, unknown or bad one."""
    converters = {**QUERY_OPTIONS, **own}
    options: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in options:
            raise ConfigurationError(f"option {name!r} is given twice in {redact_url(url)!r}")
        if name not in converters:
            raise ConfigurationError(
                f"unknown option {name!r} in {redact_url(url)!r}; the query takes "
                f"{', '.join(sorted(converters))}"
            )
        try:
            options[name] = converters[name](value)
        except ValueError as exc:
            raise ConfigurationError(f"bad value for {name} in {redact_url(url)!r}: {exc}") from None
    return options


def corrupt_entry(bucket: int, position: str, err: Exception) -> EncodingError:
    """The error for a feed entry the driver did not write (missing fields, bad data)."""
    return EncodingError(f"feed entry {position} of bucket {bucket} is corrupt: {type(err).__name__}: {err}")


class Served:
    """``DriverChecks.served()``: a ``with`` block whose client errors leave it translated.
    A class rather than ``contextlib.contextmanager``, whose generator costs a microsecond
    on every commit and load."""

    __slots__ = ("_driver",)

    def __init__(self, driver: DriverChecks) -> None:
        self._driver = driver

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, trace: object) -> None:
        if err is not None and isinstance(err, self._driver.client_errors):
            self._driver.reraise(err)


class DriverChecks:
    """What sync and async drivers share: attributes, checks and error translation.

    Subclasses set ``system_name`` (OpenTelemetry's ``db.system.name``), ``client_errors``
    (the exceptions of their client that ``served()`` translates) and override
    ``translate``; a driver that made its client sets ``owns_client`` so ``close`` closes it.
    """

    system_name: ClassVar[str] = "keyvalue"
    client_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    pushes: bool = False
    buckets: int = 1
    feed: bool = True
    owns_client: bool = False
    _closed: bool = False

    def translate(self, err: BaseException) -> KvSourcingError | None:
        """The library's exception for a client error (``None``: raise it as it is)."""
        return None

    def served(self) -> Served:
        """Run calls to the backend (awaited ones too) with its client's errors translated
        by ``reraise``."""
        return Served(self)

    def reraise(self, err: BaseException) -> NoReturn:
        """Raise ``translate(err)`` from client error ``err``, or ``err`` itself when it has no
        translation. The hot paths catch ``client_errors`` and call this themselves, which
        costs less than a ``served()`` block."""
        translated = self.translate(err)
        if translated is None:
            raise err
        raise translated from err

    def check_feed_request(self, after: Mapping[int, str | None], limit: int) -> None:
        """Refuse a ``read_feed`` of a bucket the driver lacks, or a limit below 1."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        for bucket in after:
            if not 0 <= bucket < self.buckets:
                raise ValueError(f"bucket {bucket} is not in 0 .. {self.buckets - 1}")

    def closing(self) -> bool:
        """Mark the driver closed; whether it was open and owns a client to close now."""
        was_open, self._closed = not self._closed, True
        return was_open and self.owns_client


class DriverBase(DriverChecks, ClosesOnExit):
    """The base of sync drivers; see the module docstring."""

    def append_many(self, commits: Sequence[Commit]) -> Refusal | None:
        raise NotImplementedError

    def append(self, commit: Commit) -> int | None:
        """Write one commit: ``None`` when written, else the refusal's ``head``."""
        refusal = self.append_many((commit,))
        return None if refusal is None else refusal.head

    def close_client(self) -> None:
        """Close the client this driver made (called once, by ``close``)."""

    def close(self) -> None:
        """Close the client if this driver made it (idempotent)."""
        if self.closing():
            self.close_client()


class AsyncDriverBase(DriverChecks):
    """The base of asyncio drivers: ``DriverBase`` with coroutines; ``async with`` closes it."""

    async def append_many(self, commits: Sequence[Commit]) -> Refusal | None:
        raise NotImplementedError

    async def append(self, commit: Commit) -> int | None:
        """Write one commit: ``None`` when written, else the refusal's ``head``."""
        refusal = await self.append_many((commit,))
        return None if refusal is None else refusal.head

    async def close_client(self) -> None:
        """Close the client this driver made (called once, by ``close``)."""

    async def close(self) -> None:
        """Close the client if this driver made it (idempotent)."""
        if self.closing():
            await self.close_client()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
