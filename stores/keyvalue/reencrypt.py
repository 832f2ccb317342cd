"""``reencrypt(store, key)``: rewrite one aggregate's stream under the store's newest cipher key.

It reads every record and the snapshot, decrypts each (with whichever of the cipher's keys
sealed it; plaintext records written before the cipher was turned on are encrypted now),
seals it again under the newest key with the store's compression, and hands the lot to the
driver's optional ``rewrite`` primitive, which writes it only if the aggregate's head has
not moved since the read: a commit that lands in between makes it read and try again, so
no event is lost or altered by a concurrent writer. Nothing is decoded, so the events'
bytes are kept exactly. Feed entries keep the bytes they were written with: keep an old
key until the feed has been trimmed past the entries it sealed.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from kvsourcing.errors import ConcurrencyFault, ConfigurationError, EncodingError
from kvsourcing.keys import validate_key
from kvsourcing.mapper import EVENT, SNAPSHOT
from kvsourcing.stores.keyvalue.driver import EventDriver
from kvsourcing.stores.keyvalue.records import Snapshot
from kvsourcing.stores.keyvalue.store import KeyValueStore


@runtime_checkable
class RewritingDriver(EventDriver, Protocol):
    """A driver with the optional ``rewrite`` primitive (see ``MemoryDriver.rewrite``)."""

    def rewrite(
        self, key: str, expected_head: int, records: list[bytes], snapshot: Snapshot | None = None
    ) -> int | None: ...


def reencrypt(store: KeyValueStore, key: str, *, attempts: int = 10) -> int:
    """Re-seal ``key``'s records and snapshot under the newest key; returns how many were
    rewritten (0: all were current already). Raises ``ConcurrencyFault`` when writers kept
    moving the head through ``attempts`` tries, and ``EncodingError`` (writing nothing) when
    a record fails to decrypt."""
    key = validate_key(key)
    driver = store.driver
    if not isinstance(driver, RewritingDriver):
        raise ConfigurationError(
            f"{type(driver).__name__} has no rewrite primitive, so it cannot re-encrypt in place "
            "(only the memory driver has one so far)"
        )
    mapper = store.mapper
    if mapper.cipher is None:
        raise ConfigurationError("the store has no cipher: pass cipher= or set KVSOURCING_CIPHER_KEY")
    head = 0
    for _ in range(attempts):
        loaded = driver.load(key, 0, use_snapshot=False)
        snapshot = driver.load(key, 0).snapshot
        head = loaded.last
        if snapshot is not None and snapshot.sequence > head:
            continue  # a commit landed between the two reads
        stale = [not mapper.is_current(record) for record in loaded.records]
        stale_snapshot = snapshot is not None and not mapper.is_current(snapshot.state)
        if not any(stale) and not stale_snapshot:
            return 0
        records = []
        for sequence, record in enumerate(loaded.records, 1):
            records.append(_reseal(store, key, sequence, EVENT, record))
        if snapshot is not None:
            snapshot = Snapshot(
                snapshot.sequence, _reseal(store, key, snapshot.sequence, SNAPSHOT, snapshot.state)
            )
        if driver.rewrite(key, head, records, snapshot) is None:
            return sum(stale) + stale_snapshot
    raise ConcurrencyFault(key, head + 1)


def _reseal(store: KeyValueStore, key: str, sequence: int, kind: bytes, blob: bytes) -> bytes:
    mapper = store.mapper
    try:
        return mapper.wrap(key, sequence, kind, mapper.unwrap(key, sequence, kind, blob))
    except EncodingError as exc:
        what = "snapshot" if kind == SNAPSHOT else "record"
        raise EncodingError(f"cannot re-encrypt {key!r}: the {what} at sequence {sequence}: {exc}") from None
