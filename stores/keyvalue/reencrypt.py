"""``reencrypt(store, key)``: rewrite one aggregate's stream under the store's newest cipher key.

It reads every record and the snapshot, decrypts those not sealed under the newest key
(with whichever of the cipher's keys sealed them; plaintext records written before the
cipher was turned on are encrypted now), seals them again under the newest key with the
store's compression, keeps the others' bytes, and hands the lot to the driver's
``rewrite`` primitive (``RewritingDriver``), which writes it only if the aggregate's head
has not moved since the read: a commit that lands in between makes it read and try
again, so no event is lost or altered by a concurrent writer. Nothing is decoded, so the
events' bytes are kept exactly. Feed entries keep the bytes they were written with: keep
an old key until the feed has been trimmed past the entries it sealed.
"""

from __future__ import annotations

from kvsourcing.errors import ConcurrencyFault, ConfigurationError, EncodingError
from kvsourcing.keys import validate_key
from kvsourcing.mapper import EVENT, SNAPSHOT
from kvsourcing.stores.keyvalue.driver import RewritingDriver
from kvsourcing.stores.keyvalue.records import Snapshot
from kvsourcing.stores.keyvalue.store import KeyValueStore

__all__ = ["RewritingDriver", "reencrypt"]


def reencrypt(store: KeyValueStore, key: str, *, attempts: int = 10) -> int:
    """Re-seal ``key``'s records and snapshot under the newest key; returns how many were
    rewritten (0: all were current already). Raises ``ConcurrencyFault`` when writers kept
    moving the head through ``attempts`` tries, and ``EncodingError`` (writing nothing) when
    a record fails to decrypt."""
    key = validate_key(key)
    driver = store.driver
    if not isinstance(driver, RewritingDriver):
        raise ConfigurationError(
            f"{type(driver).__name__} has no rewrite primitive, so it cannot re-encrypt in place: "
            "use a driver that has one (memory, Redis, DynamoDB)"
        )
    mapper = store.mapper
    if mapper.cipher is None:
        raise ConfigurationError("the store has no cipher: pass cipher= or set KVSOURCING_CIPHER_KEY")
    head = 0
    rewritten: set[int] = set()  # the sequences found stale by any attempt (0: a snapshot)
    for _ in range(attempts):
        loaded = driver.load(key, 0, use_snapshot=False)
        snapshot = driver.load(key, 0).snapshot
        head = loaded.last
        if snapshot is not None and snapshot.sequence > head:
            continue  # a commit landed between the two reads
        records = list(loaded.records)
        stale = [sequence for sequence, record in enumerate(records, 1) if not mapper.is_current(record)]
        for sequence in stale:
            records[sequence - 1] = _reseal(store, key, sequence, EVENT, records[sequence - 1])
        if snapshot is not None and not mapper.is_current(snapshot.state):
            stale.append(0)
            snapshot = Snapshot(
                snapshot.sequence, _reseal(store, key, snapshot.sequence, SNAPSHOT, snapshot.state)
            )
        if not stale:  # all current: already, or through an earlier attempt's partial rewrite
            return len(rewritten)
        rewritten.update(stale)
        if driver.rewrite(key, head, records, snapshot) is None:
            return len(rewritten)
    raise ConcurrencyFault(key, head + 1)


def _reseal(store: KeyValueStore, key: str, sequence: int, kind: bytes, blob: bytes) -> bytes:
    mapper = store.mapper
    try:
        return mapper.wrap(key, sequence, kind, mapper.unwrap(key, sequence, kind, blob))
    except EncodingError as exc:
        what = "snapshot" if kind == SNAPSHOT else "record"
        raise EncodingError(f"cannot re-encrypt {key!r}: the {what} at sequence {sequence}: {exc}") from None
